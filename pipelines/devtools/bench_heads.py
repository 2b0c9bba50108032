"""train-head (lgbm) against a plain hand-written LightGBM fold loop on the same data and params.

Both read the same files (an embedding dir + labels CSV), use the same folds and the same
LightGBM parameters; the difference is olymp's own overhead (joining, checks, writing the run).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.data.embeddings import FORMAT_VERSION


def write_bench_data(root: Path, rows: int, dim: int, classes: int, seed: int = 0) -> tuple[Path, Path]:
    from sklearn.datasets import make_classification

    from pipelines.extract.writer import PartWriter, write_manifest

    X, y = make_classification(n_samples=rows, n_features=dim, n_informative=dim // 4, n_classes=classes,
                               n_clusters_per_class=2, class_sep=0.8, random_state=seed)
    ids = [f"row-{i:06d}" for i in range(rows)]
    embeddings = root / "emb"
    embeddings.mkdir(parents=True)
    manifest = {"olymp_format": FORMAT_VERSION, "kind": "embeddings", "status": "complete", "modality": "image",
                "backbone": "bench", "weights_sha256": None, "preprocessing": {}, "embedding_dim": dim,
                "weights_source": "synthetic", "counts": {"inputs": rows, "embedded": rows, "errors": 0}}
    writer = PartWriter(embeddings, dim, {}, part_size=rows, first_part=0)
    writer.add(ids, X.astype(np.float32), [])
    writer.flush()
    write_manifest(embeddings, manifest)
    labels = root / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},class_{c}\n" for i, c in zip(ids, y)))
    return embeddings, labels


def hand_written_loop(embeddings: Path, labels: Path, folds: int, seed: int) -> float:
    """What a contestant writes in a notebook: read, join, StratifiedKFold, lgb.train, OOF."""
    import lightgbm as lgb
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from pipelines.heads.lgbm import default_lgbm_params, feature_fraction_for, patience_for, threads_for

    frame = pd.read_parquet(embeddings).merge(pd.read_csv(labels, dtype=str), on="id")
    X = np.stack(frame["embedding"].to_numpy()).astype(np.float32)
    classes, y = np.unique(frame["label"].to_numpy(dtype=object), return_inverse=True)
    oof = np.zeros((len(y), len(classes)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_index, valid_index in splitter.split(X, y):
        # honest early stopping, as train-head does: on a held-out fifth of the training part,
        # then a refit on all of it for the best number of rounds scaled to its size
        inner, held = next(StratifiedKFold(5, shuffle=True, random_state=seed).split(train_index, y[train_index]))
        inner, held = train_index[inner], train_index[held]
        params = default_lgbm_params("multiclass", len(classes), seed=seed,
                                     n_jobs=threads_for(len(train_index), X.shape[1]))
        params.update(feature_fraction=feature_fraction_for(X.shape[1]), early_stopping_round=patience_for(len(inner)))
        booster = lgb.train(params, lgb.Dataset(X[inner], y[inner]), valid_sets=[lgb.Dataset(X[held], y[held])])
        rounds = max(1, round(booster.best_iteration * len(train_index) / len(inner)))
        params.pop("early_stopping_round")
        booster = lgb.train({**params, "num_iterations": rounds}, lgb.Dataset(X[train_index], y[train_index]))
        oof[valid_index] = booster.predict(X[valid_index])
    return float((oof.argmax(1) == y).mean())


def bench_train_head(rows: int = 2000, dim: int = 128, classes: int = 3, folds: int = 5, seed: int = 42,
                     repeats: int = 2) -> dict:
    """Best of `repeats` runs each, alternating which goes first, so neither gets a warm start."""
    from pipelines.train.train import TrainConfig, train

    olymp_times, hand_times = [], []
    with tempfile.TemporaryDirectory(prefix="olymp-bench-heads-") as tmp:
        embeddings, labels = write_bench_data(Path(tmp), rows, dim, classes)

        def run_olymp() -> float:
            result = train(TrainConfig(embeddings=[str(embeddings)], labels=str(labels), output=str(Path(tmp) / "run"),
                                       head="lgbm", folds=folds, seed=seed, overwrite=True,
                                       tune="off"))  # the hand loop does not tune: the same work on both sides
            return result.oof["accuracy"]

        for repeat in range(repeats):
            order = [("hand", hand_written_loop), ("olymp", None)]
            for name, _ in (order if repeat % 2 == 0 else order[::-1]):
                started = time.perf_counter()
                if name == "hand":
                    hand_accuracy = hand_written_loop(embeddings, labels, folds, seed)
                    hand_times.append(time.perf_counter() - started)
                else:
                    olymp_accuracy = run_olymp()
                    olymp_times.append(time.perf_counter() - started)
    olymp_seconds, hand_seconds = min(olymp_times), min(hand_times)
    row = {"rows": rows, "dim": dim, "classes": classes, "folds": folds, "repeats": repeats,
           "train_head_s": olymp_seconds, "hand_loop_s": hand_seconds, "ratio": olymp_seconds / hand_seconds,
           "train_head_accuracy": olymp_accuracy, "hand_loop_accuracy": hand_accuracy}
    print(f"train-head lgbm {rows}x{dim}, {classes} classes, {folds} folds, best of {repeats}: "
          f"olymp {olymp_seconds:.1f} s | hand-written loop {hand_seconds:.1f} s | ratio {row['ratio']:.2f} "
          f"(accuracy {olymp_accuracy:.3f} vs {hand_accuracy:.3f})", flush=True)
    return row


def bench_heads(rows: int = 1500, dim: int = 1280, classes: int = 10, folds: int = 5, seed: int = 42,
                heads: tuple[str, ...] = ("logreg", "mlp", "lgbm")) -> list[dict]:
    """Each head's train-head time and OOF accuracy on one embedding-sized synthetic set (the
    digits demo's shape by default: ~1.4k rows of 1280-d), so a head's speed is tracked."""
    from pipelines.train.train import TrainConfig, train

    out = []
    with tempfile.TemporaryDirectory(prefix="olymp-bench-heads-") as tmp:
        embeddings, labels = write_bench_data(Path(tmp), rows, dim, classes)
        for head in heads:
            started = time.perf_counter()
            result = train(TrainConfig(embeddings=[str(embeddings)], labels=str(labels), output=str(Path(tmp) / head),
                                       head=head, folds=folds, seed=seed))
            row = {"head": head, "rows": rows, "dim": dim, "classes": classes, "folds": folds,
                   "seconds": time.perf_counter() - started, "accuracy": result.oof["accuracy"]}
            print(f"train-head --head {head} {rows}x{dim}, {classes} classes, {folds} folds: "
                  f"{row['seconds']:.1f} s, OOF accuracy {row['accuracy']:.3f}", flush=True)
            out.append(row)
    return out
