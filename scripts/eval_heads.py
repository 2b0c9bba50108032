"""`make eval` section: tuned vs untuned heads (issue 16), and a hand-tuned logistic regression.

Per dev dataset, on the embeddings `make eval` already extracts (CIFAR-10 subset: packaged
EfficientNet-Lite0; ESC-10: log-mel -> Lite0, official folds as groups), each head is trained by
olymp's own `train` twice on the same folds, `--tune off` and `--tune auto`: OOF accuracy, log
loss and train-head seconds. Beside them, a logistic regression tuned by hand, written here
with sklearn: StandardScaler + LogisticRegression, C chosen per outer fold by GridSearchCV (inner
3-fold CV of the fold's training part, log loss; grouped for ESC-10) over a log grid, scored on
the same outer folds as olymp's runs. Goal: tuned >= untuned on every row, tuned logreg >= the
hand-tuned grid.

    python scripts/eval_heads.py [--devdata ../shared/devdata] [--heads logreg,mlp,lgbm] [--only cifar10|esc10]

Appends nothing outside the cache folder (results in CACHE/heads.csv). Skips when devdata is absent.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

HAND_C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def hand_tuned_logreg(embeddings: Path, labels: Path, run_dir: Path, group_col: str | None) -> dict:
    """StandardScaler + LogisticRegression, C by inner 3-fold GridSearchCV per outer fold (the
    outer folds of `run_dir`'s folds.csv), OOF accuracy and log loss."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from pipelines.data.embeddings import read_embeddings

    emb = read_embeddings(embeddings)
    table = pd.read_csv(labels, dtype=str)
    stems = {str(i).rsplit("/", 1)[-1]: n for n, i in enumerate(emb.ids)}
    folds = pd.read_csv(run_dir / "folds.csv", dtype={"id": str})
    table = table.set_index("id").loc[folds["id"]]
    X = emb.vectors[[stems[i.rsplit("/", 1)[-1]] for i in folds["id"]]].astype(np.float64)
    classes, y = np.unique(table["label"].to_numpy(), return_inverse=True)
    groups = table[group_col].to_numpy() if group_col else None
    outer = folds["fold"].to_numpy()
    oof = np.zeros((len(y), len(classes)))
    chosen = []
    with threadpool_limits(1):
        for k in np.unique(outer):
            train, valid = outer != k, outer == k
            inner = StratifiedGroupKFold(3, shuffle=True, random_state=0) if groups is not None else StratifiedKFold(3, shuffle=True, random_state=0)
            search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                  {"logisticregression__C": list(HAND_C_GRID)}, scoring="neg_log_loss", cv=inner)
            search.fit(X[train], y[train], **({"groups": groups[train]} if groups is not None else {}))
            chosen.append(search.best_params_["logisticregression__C"])
            oof[valid] = search.predict_proba(X[valid])
    return {"accuracy": float(accuracy_score(y, oof.argmax(1))), "logloss": float(log_loss(y, oof)), "chosen": chosen}


def run(devdata: Path, cache: Path, args) -> None:
    from eval import SEED, datasets, slug

    from pipelines.core.io import write_text_atomic
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction
    from pipelines.train.train import TrainConfig, train

    heads = [h.strip() for h in getattr(args, "tune_heads", "logreg,mlp,lgbm").split(",") if h.strip()]
    # the route each dataset's heads are compared on: the first of eval.py's (extracted there, cached)
    rows = []
    for dataset in datasets(devdata):
        if getattr(args, "only", None) and dataset.name != args.only:
            continue
        route = dataset.routes[0] if dataset.name == "cifar10" else dataset.routes[-1]
        output = cache / dataset.name / slug(route.name)
        run_extraction(ExtractConfig(inputs=str(dataset.inputs), output=str(output), device="cpu", **route.extract))
        dataset_rows, first_run = [], None
        for head in heads:
            for tune in ("off", "auto"):
                run_dir = cache / dataset.name / "runs-heads" / f"{slug(route.name)}-{head}-tune-{tune}"
                started = time.perf_counter()
                result = train(TrainConfig(
                    embeddings=[str(output)], labels=str(dataset.labels), output=str(run_dir), group_col=dataset.group_col,
                    head=head, tune=tune, seed=SEED, overwrite=True,
                ))
                first_run = first_run or run_dir
                from pipelines.heads.tuning import describe_params

                chosen = sorted({describe_params(r.get("params") or {}) for r in result.tuning if r})
                dataset_rows.append({
                    "dataset": dataset.name, "route": route.name, "head": head, "tune": tune,
                    "accuracy": round(result.oof["accuracy"], 4), "logloss": round(result.oof["logloss"], 4),
                    "seconds": round(time.perf_counter() - started, 1),
                    "chosen": "; ".join(chosen),
                })
                print(f"{dataset.name}: {head} --tune {tune}: accuracy {result.oof['accuracy']:.4f}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        hand = hand_tuned_logreg(output, dataset.labels, first_run, dataset.group_col)
        dataset_rows.append({
            "dataset": dataset.name, "route": route.name, "head": "hand-tuned logreg (sklearn grid)", "tune": "nested CV",
            "accuracy": round(hand["accuracy"], 4), "logloss": round(hand["logloss"], 4),
            "seconds": round(time.perf_counter() - started, 1), "chosen": "C=" + ",".join(f"{c:g}" for c in hand["chosen"]),
        })
        print(f"\n{dataset.name} ({route.name}; {'groups: ' + dataset.group_col if dataset.group_col else '5-fold stratified'}): "
              "heads untuned vs tuned, OOF")
        print(table(dataset_rows), flush=True)
        rows += dataset_rows
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(cache / "heads.csv", buffer.getvalue())
    print(f"\nheads results: {cache / 'heads.csv'}")


def table(rows: list[dict]) -> str:
    header = f"{'head':<34} {'tune':<10} {'accuracy':>8} {'logloss':>8} {'seconds':>8}  chosen"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['head']:<34} {row['tune']:<10} {100 * row['accuracy']:>7.1f}% {row['logloss']:>8.4f} "
                     f"{row['seconds']:>8}  {row['chosen'][:120]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from eval import CACHE, DEFAULT_DEVDATA

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devdata", type=Path, default=Path(os.environ.get("OLYMP_DEVDATA", DEFAULT_DEVDATA)))
    parser.add_argument("--heads", dest="tune_heads", default="logreg,mlp,lgbm")
    parser.add_argument("--only", choices=("cifar10", "esc10"), default=None)
    args = parser.parse_args(argv)
    if not args.devdata.is_dir():
        print(f"eval_heads: no devdata at {args.devdata}; nothing to do")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(args.devdata, CACHE, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
