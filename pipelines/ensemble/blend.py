"""`blend`: train-head runs on the same folds -> weights chosen on their out-of-fold predictions.

Steps: load the runs and refuse any that differs from the first (task, class order, ids, fold
assignment, labels) -> read the truth from the labels CSV -> cross-fit the weights on the OOF
predictions -> choose the final weights on all OOF rows -> write the blend directory, which
`olymp predict` uses like a run directory:

    BLEND_DIR/
      manifest.json   kind "blend": members (run paths, final weights, OOF scores), per-fold weights,
                      method, task, classes, provenance
      oof.csv         id, fold, the cross-fitted blended columns (as the members' oof.csv)
      scores.json     the blend's metrics (per fold, mean, std, all OOF), each member's, provenance

Methods: `greedy` is ensemble selection with replacement (Caruana et al., 2004): start from
the best single run, repeatedly add the run (again, possibly) that most improves the blended
OOF score, keep the best prefix; weights are the counts. `nnls` fits non-negative least
squares of the members' predictions on the truth (one-hot for classes), weights rescaled to
sum to 1 for probabilities. Either way, a combination that scores below the best single run on
the rows it was fitted on falls back to that run.

Cross-fitting: weights chosen and scored on the same rows flatter the blend. So for each fold k,
the weights (and the fallback decision, and for multilabel the threshold) are chosen on the other
folds' OOF rows and applied to fold k's rows; every reported blend score is computed on these
cross-fitted predictions, which is out-of-sample. The weights saved for predict are chosen the
same way on all OOF rows. When the cross-fitted blend scores below the best single run, a
warning says so (out of sample, the blend does not beat that run).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import cv
from pipelines.train import metrics
from pipelines.core.errors import ConfigError, InputError, MismatchError
from pipelines.core.io import check_output_dir, json_ready, prepare_output_dir, write_atomic, write_json_atomic
from pipelines.core.hashing import file_sha256
from pipelines.train.metrics import GREATER_IS_BETTER
from pipelines.train.report import BLEND_PICTURE, draw_blend
from pipelines.data.tasks import TASKS
from pipelines.data.labels import read_labels, target_from_labels
from pipelines.train.rundir import RUN_FORMAT, RUN_MANIFEST
from pipelines.train.blenddir import BLEND_KIND, _read_json

METHODS = ("greedy", "nnls")
BLEND_FILES = (RUN_MANIFEST, "oof.csv", "scores.json")
PROVENANCE_BLEND = (
    "weights cross-fitted over the folds (each fold's rows blended with weights chosen on the other folds' "
    "OOF rows; the saved weights are chosen on all OOF rows)"
)

# on_progress(level, message): level is "info" or "warning".
Progress = Callable[[str, str], None]


@dataclass
class BlendConfig:
    runs: list[str]  # train-head run dirs trained on the same labels, ids and folds
    output: str  # the blend directory to create
    method: str = "greedy"  # greedy | nnls
    metric: str | None = None  # the score weights are chosen on; None: the first run's main metric
    iterations: int = 50  # greedy: how many picks (with replacement) at most
    labels: str | None = None  # the labels CSV if it moved since training; None: the path the runs recorded
    overwrite: bool = False  # replace an existing blend in `output`


@dataclass
class BlendResult:
    blend_dir: Path
    task: str
    method: str
    metric: str  # the metric the weights were chosen on (first in `metrics`)
    metrics: list[str]
    members: list[dict]  # per input run: run, head, final weight, oof (every metric)
    oof: dict[str, float]  # every metric of the cross-fitted blended OOF predictions
    n_rows: int
    folds: list[dict] = field(default_factory=list)  # per fold: the weights (threshold) fitted on the other folds
    provenance: dict[str, str] = field(default_factory=dict)  # how each number was obtained
    threshold: float | None = None  # multilabel: the saved threshold (tuned on all OOF rows)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """JSON-ready digest (what `blend --json` prints)."""
        return json_ready({
            "blend_dir": str(self.blend_dir), "task": self.task, "method": self.method, "metric": self.metric,
            "metrics": self.metrics, "members": self.members, "oof": self.oof, "n_rows": self.n_rows,
            "cross_fit": self.folds, "threshold": self.threshold, "provenance": self.provenance,
            "warnings": self.warnings, "seconds": round(self.seconds, 3),
        })


# --------------------------------------------------------------------------- members

@dataclass
class Member:
    path: Path
    run: dict
    oof: pd.DataFrame  # id, fold, value columns; rows in the first member's id order
    fold_hash: str


def _rebuild_run(path: Path) -> str:
    return f"re-run olymp train-head with -o {path} --overwrite to rebuild the run"


def _valid_labels_record(labels) -> bool:
    """What a blend reads of a member's labels record: columns, and the CSV's path and SHA-256
    unless the labels came from the folders (--labels-from-folders)."""
    if not isinstance(labels, dict):
        return False
    keys = ("id_col", "target_col") if labels.get("from_folders") else ("path", "sha256", "id_col", "target_col")
    return all(isinstance(labels.get(k), str) for k in keys)


def read_run(path: Path) -> dict:
    """A member's manifest.json, checked to hold what a blend reads from it."""
    manifest_path = path / RUN_MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            f"{path} is not a train-head run (no {RUN_MANIFEST}); "
            "create one with: olymp train-head EMBEDDINGS --labels labels.csv -o RUN_DIR"
        )
    run = _read_json(manifest_path, _rebuild_run(path))
    if run.get("kind") == BLEND_KIND:
        raise InputError(f"{path} is a blend; pass its member runs (listed in its manifest.json) instead")
    if run.get("kind") != "head_run":
        raise InputError(
            f"{manifest_path} is not a train-head manifest (kind {run.get('kind')!r}); pass a train-head -o directory"
        )
    labels, head = run.get("labels"), run.get("head")
    problems = [
        run.get("task") not in TASKS and "task",
        not isinstance(run.get("metric"), str) and "metric",
        not _valid_labels_record(labels) and "labels",
        not (isinstance(head, dict) and isinstance(head.get("name"), str)) and "head",
        "prior" not in run and "prior",
        run.get("task") != "regression" and not isinstance(run.get("classes"), list) and "classes",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise InputError(f"{manifest_path} lacks a valid {', '.join(problems)}; {_rebuild_run(path)}")
    return run


def _read_oof(path: Path, run: dict) -> pd.DataFrame:
    """The run's oof.csv: unique ids, integer folds, finite numbers in the columns its task makes."""
    oof_path = path / "oof.csv"
    fix = _rebuild_run(path)
    if not oof_path.is_file():
        raise InputError(f"{path} has no oof.csv; {fix}")
    try:
        oof = pd.read_csv(oof_path, dtype={"id": str}, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        reason = "empty" if isinstance(error, pd.errors.EmptyDataError) else "not a readable CSV"
        raise InputError(f"{oof_path} is {reason}; {fix}") from None
    expected = run["classes"] if run["task"] != "regression" else ["prediction"]
    if list(oof.columns) != ["id", "fold", *expected]:
        raise InputError(f"{oof_path} has columns {list(oof.columns)}, not id, fold, {', '.join(expected)}; {fix}")
    if not len(oof):
        raise InputError(f"{oof_path} has no rows; {fix}")
    if oof["id"].duplicated().any():
        raise InputError(f"{oof_path} repeats id {oof['id'][oof['id'].duplicated()].iloc[0]!r}; {fix}")
    try:
        folds = pd.to_numeric(oof["fold"], errors="raise").to_numpy(dtype=np.float64)
        values = oof[expected].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{oof_path} holds an empty, NaN or other non-numeric value; {fix}") from None
    if not np.isfinite(values).all():
        raise InputError(f"{oof_path} holds a NaN or infinite prediction; {fix}")
    if not (np.isfinite(folds).all() and (folds >= 0).all() and (folds == np.round(folds)).all()):
        raise InputError(f"{oof_path} has a fold that is not a whole number >= 0; {fix}")
    if len(np.unique(folds)) < 2:
        raise InputError(f"{oof_path} has one fold only, so nothing is out-of-fold; {fix}")
    oof["fold"] = folds.astype(np.int64)
    oof[expected] = values
    return oof


def _value_columns(oof: pd.DataFrame) -> list[str]:
    """Every column but id and fold: class probabilities, per-label probabilities or `prediction`."""
    return [c for c in oof.columns if c not in ("id", "fold")]


def load_member(path: str | Path) -> Member:
    path = Path(path)
    run = read_run(path)
    oof = _read_oof(path, run)
    ids = oof["id"].to_numpy(dtype=object)
    fold_hash = run.get("fold_hash") or cv.fold_hash(ids, oof["fold"].to_numpy(dtype=np.int64))  # older runs
    return Member(path, run, oof, fold_hash)


def check_compatible(members: list[Member]) -> None:
    """Refuse runs whose OOF predictions cannot be compared row by row, naming the one that differs."""
    first = members[0]
    ids = set(first.oof["id"])
    for other in members[1:]:
        a, b = first.run, other.run
        if b["task"] != a["task"]:
            raise MismatchError(
                f"{other.path} is a {b['task']} run, {first.path} a {a['task']} run; blend runs of one task"
            )
        if b.get("classes") != a.get("classes"):
            raise MismatchError(
                f"{other.path} has classes {b.get('classes')}, {first.path} has {a.get('classes')}; "
                "blend runs trained on the same labels"
            )
        if _value_columns(other.oof) != _value_columns(first.oof):
            raise MismatchError(
                f"{other.path}/oof.csv has columns {_value_columns(other.oof)}, {first.path}/oof.csv "
                f"{_value_columns(first.oof)}; blend runs trained on the same labels"
            )
        their_ids = set(other.oof["id"])
        if their_ids != ids:
            raise MismatchError(
                f"{other.path} holds {len(their_ids - ids)} ids not in {first.path} and lacks {len(ids - their_ids)} "
                f"of its ids; retrain it on the same labels and embeddings with --folds-from {first.path}"
            )
        if other.fold_hash != first.fold_hash:
            raise MismatchError(
                f"{other.path} used other folds than {first.path} (fold-assignment hashes differ), so their OOF "
                f"predictions are not comparable; retrain it with --folds-from {first.path}"
            )
        if b["labels"].get("sha256") != a["labels"].get("sha256"):
            raise MismatchError(
                f"{other.path} was trained on another labels file than {first.path} (SHA-256 differs); "
                "blend runs trained on the same labels"
            )
        if b["labels"].get("target_col") != a["labels"].get("target_col"):
            raise MismatchError(
                f"{other.path} predicts '{b['labels'].get('target_col')}', {first.path} "
                f"'{a['labels'].get('target_col')}'; blend runs of one target"
            )


def _align(members: list[Member]) -> None:
    """Every member's OOF rows in the first member's id order."""
    order = members[0].oof["id"].to_numpy(dtype=object)
    for member in members[1:]:
        positions = pd.Index(member.oof["id"]).get_indexer(order)
        member.oof = member.oof.iloc[positions].reset_index(drop=True)


def read_truth(run: dict, ids: np.ndarray, labels: str | None) -> np.ndarray:
    """The encoded target of `ids` (class indices / values), read again from the labels CSV."""
    recorded = run["labels"]
    if recorded.get("from_folders") and labels is None:  # --labels-from-folders: the class is in the id
        from pipelines.data.ids import folder_labels

        frame = pd.DataFrame({recorded["id_col"]: ids, recorded["target_col"]: folder_labels(ids, "the OOF ids")})
        return target_from_labels(frame, np.arange(len(ids)), recorded["target_col"], None, run["task"]).y
    path = Path(labels or recorded["path"])
    if not path.is_file():
        raise InputError(f"the runs' labels file {path} is missing; pass --labels with the labels CSV they were trained on")
    if file_sha256(path) != recorded.get("sha256"):
        raise MismatchError(
            f"{path} is not the labels file the runs were trained on (SHA-256 differs); pass --labels with that file"
        )
    frame = read_labels(path, recorded["id_col"], recorded["target_col"], None, keep_empty=recorded.get("label_sep") is not None)
    positions = pd.Index(frame[recorded["id_col"]]).get_indexer(ids)
    if (positions < 0).any():
        raise MismatchError(f"{int((positions < 0).sum())} OOF ids are not in {path}; pass --labels with the training labels")
    target = target_from_labels(frame, positions, recorded["target_col"], recorded.get("label_sep"), run["task"])
    if target.classes != run.get("classes"):
        raise MismatchError(f"the classes in {path} are not the runs' ({run.get('classes')}); pass --labels with the training labels")
    return target.y


# --------------------------------------------------------------------------- weights

Scorer = Callable[[np.ndarray], float]


def _better(a: float, b: float, greater: bool) -> bool:
    """Strictly better; NaN is never better."""
    if np.isnan(a):
        return False
    if np.isnan(b):
        return True
    return a > b if greater else a < b


def _best_index(scores: list[float], greater: bool) -> int:
    best = 0
    for i, value in enumerate(scores):
        if _better(value, scores[best], greater):
            best = i
    return best


def greedy_weights(
    preds: list[np.ndarray], singles: list[float], score: Scorer, greater: bool, iterations: int
) -> np.ndarray:
    """Ensemble selection with replacement, starting from the best member (`singles`: each one's
    own score): counts of each member in the best prefix, as weights."""
    first = _best_index(singles, greater)
    counts = np.zeros(len(preds))
    counts[first] = 1
    total, picked = preds[first].astype(np.float64), 1
    best_score, best_counts = singles[first], counts.copy()
    for _ in range(iterations - 1):
        candidates = [score((total + p) / (picked + 1)) for p in preds]
        choice = _best_index(candidates, greater)
        total, picked = total + preds[choice], picked + 1
        counts[choice] += 1
        if _better(candidates[choice], best_score, greater):
            best_score, best_counts = candidates[choice], counts.copy()
    return best_counts / best_counts.sum()


def nnls_weights(preds: list[np.ndarray], y: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """Non-negative least squares of the members' predictions on the truth; sums to 1 for classes."""
    from scipy.optimize import nnls

    if task == "regression":
        A, b = np.column_stack(preds), np.asarray(y, dtype=np.float64)
    else:  # class indices -> one-hot; a 0/1 matrix (one column per label) is used as it is
        A = np.column_stack([p.reshape(-1) for p in preds])
        b = (np.asarray(y, dtype=np.float64) if np.ndim(y) == 2 else np.eye(n_classes)[y]).reshape(-1)
    weights, _ = nnls(A, b)
    if task != "regression":
        weights = weights / weights.sum() if weights.sum() > 0 else np.zeros_like(weights)
    return weights


def combine(preds: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, preds) if w > 0)


def choose_weights(
    method: str, preds: list[np.ndarray], y: np.ndarray, task: str, n_classes: int, metric: str, iterations: int = 50
) -> tuple[np.ndarray, int | None]:
    """Member weights by `method`, and the index of the best single member when the combination
    scored below it on `metric` (the weights are then that member alone), else None."""
    greater = GREATER_IS_BETTER[metric]

    def score(pred: np.ndarray) -> float:
        return metrics.score(task, y, pred, [metric])[metric]

    singles = [score(p) for p in preds]  # each member once: greedy starts from them, the fallback compares to them
    if method == "greedy":
        weights = greedy_weights(preds, singles, score, greater, iterations)
    else:
        weights = nnls_weights(preds, y, task, n_classes)
    best = _best_index(singles, greater)
    if not weights.any() or _better(singles[best], score(combine(preds, weights)), greater):
        return np.eye(len(preds))[best], best
    return weights, None


@dataclass
class CrossFit:
    blended: np.ndarray  # each fold's rows blended with the weights fitted on the other folds
    folds: list[dict]  # per fold: fold, weights, fell_back_to (member index or None), threshold
    decided_at: np.ndarray | None  # multilabel: each row's threshold (its fold's), else None


def fit_blend(
    method: str, preds: list[np.ndarray], y: np.ndarray, task: str, n_classes: int, metric: str, iterations: int
) -> tuple[np.ndarray, int | None, float | None]:
    """Everything a blend chooses from rows with known truth: weights, the fallback, and for
    multilabel the threshold (tuned on the blended rows)."""
    weights, fell_back = choose_weights(method, preds, y, task, n_classes, metric, iterations)
    threshold = metrics.tune_threshold(y, combine(preds, weights)) if task == "multilabel" else None
    return weights, fell_back, threshold


def cross_fit(
    method: str, preds: list[np.ndarray], y: np.ndarray, folds: np.ndarray, task: str, n_classes: int,
    metric: str, iterations: int = 50,
) -> CrossFit:
    """For each fold k: fit_blend on the other folds' OOF rows, applied to fold k's rows, so no
    row's blended prediction (or decision) depends on its own truth."""
    blended = np.zeros(preds[0].shape, dtype=np.float64)
    decided_at = np.zeros(len(y)) if task == "multilabel" else None
    per_fold = []
    for k in np.unique(folds):
        fit, apply = folds != k, folds == k
        weights, fell_back, threshold = fit_blend(
            method, [p[fit] for p in preds], y[fit], task, n_classes, metric, iterations
        )
        blended[apply] = combine([p[apply] for p in preds], weights)
        if decided_at is not None:
            decided_at[apply] = threshold
        per_fold.append({"fold": int(k), "weights": weights.tolist(), "fell_back_to": fell_back, "threshold": threshold})
    return CrossFit(blended, per_fold, decided_at)


def member_scores(task: str, y: np.ndarray, pred: np.ndarray, folds: np.ndarray, names: list[str], run: dict) -> dict:
    """A member's OOF scores as the blend's are scored: multilabel F1 at its given threshold, or
    at thresholds cross-fitted over the folds (like train-head) when the run tuned its own."""
    if task != "multilabel":
        return metrics.score(task, y, pred, names)
    if run.get("threshold_source") == "given":
        return metrics.score(task, y, pred, names, run.get("threshold"))
    decided_at, _ = metrics.cross_fit_threshold(y, pred, folds)
    return metrics.score(task, y, pred, names, decided_at)


# --------------------------------------------------------------------------- the blend

def _validate(config: BlendConfig) -> None:
    if len(config.runs) < 2:
        raise ConfigError("a blend needs two or more runs; e.g. olymp blend runs/lgbm runs/logreg -o runs/blend")
    if config.method not in METHODS:
        raise ConfigError(f"unknown --method '{config.method}'; pass one of: {', '.join(METHODS)}")
    if config.iterations < 1:
        raise ConfigError(f"--iterations {config.iterations} picks nothing; pass --iterations 1 or more")
    resolved = [Path(p).resolve() for p in config.runs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("a run is given twice; pass each run once (greedy selection already reuses runs)")


def prepare_blend_dir(path: str | Path, overwrite: bool) -> Path:
    blend_dir = check_output_dir(path, "pass -o with a directory for the blend")
    if (blend_dir / RUN_MANIFEST).exists():
        if not overwrite:
            raise InputError(f"{blend_dir} already holds a run or blend; pass --overwrite or choose another -o")
        existing = _read_json(blend_dir / RUN_MANIFEST, "choose another -o for the blend (olymp replaces only its own blends)")
        if existing.get("kind") != BLEND_KIND:
            raise InputError(f"{blend_dir} holds a train-head run; choose another -o for the blend")
        for name in BLEND_FILES:
            (blend_dir / name).unlink(missing_ok=True)
    return prepare_output_dir(blend_dir, "pass -o with a directory for the blend")


def blend(config: BlendConfig, on_progress: Progress | None = None) -> BlendResult:
    """Cross-fit member weights on OOF predictions, choose the final ones on all OOF rows, and
    write the blend directory."""
    notify = on_progress or (lambda level, message: None)
    started = time.perf_counter()
    _validate(config)
    members = [load_member(p) for p in config.runs]
    check_compatible(members)
    _align(members)
    first = members[0].run
    task, classes = first["task"], first.get("classes")
    names = metrics.metrics_for(task, config.metric or first["metric"])
    columns = _value_columns(members[0].oof)
    ids = members[0].oof["id"].to_numpy(dtype=object)
    folds = members[0].oof["fold"].to_numpy(dtype=np.int64)
    y = read_truth(first, ids, config.labels)

    def as_pred(member: Member) -> np.ndarray:
        values = member.oof[columns].to_numpy(dtype=np.float64)
        return values[:, 0] if task == "regression" else values

    preds = [as_pred(m) for m in members]
    main, n_classes = names[0], len(classes or [])
    singles = [member_scores(task, y, p, folds, names, m.run) for m, p in zip(members, preds)]
    crossed = cross_fit(config.method, preds, y, folds, task, n_classes, main, config.iterations)
    weights, fell_back, threshold = fit_blend(config.method, preds, y, task, n_classes, main, config.iterations)

    oof_scores = metrics.score(task, y, crossed.blended, names, crossed.decided_at)
    fold_scores = []
    for row in crossed.folds:
        rows = folds == row["fold"]
        at = None if crossed.decided_at is None else crossed.decided_at[rows]
        fold = {"fold": row["fold"], "n_valid": int(rows.sum()),
                **metrics.score(task, y[rows], crossed.blended[rows], names, at)}
        fold_scores.append(fold if at is None else {**fold, "threshold": row["threshold"]})
    mean, std = metrics.summarize(fold_scores, names)

    notes = []
    if fell_back is not None:
        notes.append(
            f"{config.method} weights scored below the best single run on OOF {main}; "
            f"the blend keeps {members[fell_back].path} alone"
        )
    best = _best_index([s[main] for s in singles], GREATER_IS_BETTER[main])
    if fell_back is None and _better(singles[best][main], oof_scores[main], GREATER_IS_BETTER[main]):
        notes.append(
            f"cross-fitted over the folds, the blend scores {main} {oof_scores[main]:.4f}, below the best single run "
            f"{members[best].path} ({singles[best][main]:.4f}): out of sample the blend does not beat it; "
            f"submit that run, or blend more diverse runs"
        )
    for note in notes:
        notify("warning", note)

    run_names = [str(m.path) for m in members]
    cross_fit_rows = [
        {**row, "fell_back_to": None if row["fell_back_to"] is None else run_names[row["fell_back_to"]]}
        for row in crossed.folds
    ]
    provenance = {"oof": metrics.PROVENANCE_OOF, "blend": PROVENANCE_BLEND}
    if task == "multilabel":
        provenance["threshold"] = metrics.PROVENANCE_THRESHOLD_CROSS_FITTED
    member_rows = [
        {"run": str(m.path), "head": m.run["head"]["name"], "weight": float(w), "oof": s}
        for m, w, s in zip(members, weights, singles)
    ]

    blend_dir = prepare_blend_dir(config.output, config.overwrite)
    frame = pd.DataFrame({"id": ids, "fold": folds})
    values = crossed.blended.reshape(len(ids), -1)
    frame = pd.concat([frame, pd.DataFrame(values, columns=columns)], axis=1)
    write_atomic(blend_dir / "oof.csv", lambda tmp: frame.to_csv(tmp, index=False))
    scores = {"metric": main, "metrics": names, "method": config.method, "folds": fold_scores, "mean": mean,
              "std": std, "oof": oof_scores, "members": member_rows, "weights": weights.tolist(),
              "threshold": threshold, "cross_fit": cross_fit_rows, "provenance": provenance}
    write_json_atomic(blend_dir / "scores.json", scores)
    draw_blend(blend_dir / BLEND_PICTURE, task, main, [str(m.path) for m in members], weights, singles, oof_scores)
    manifest = {
        "olymp_format": RUN_FORMAT,
        "kind": BLEND_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": config.method,
        "iterations": config.iterations if config.method == "greedy" else None,
        "metric": main,
        "metrics": names,
        "task": task,
        "classes": classes,
        "prior": first["prior"],
        "labels": first["labels"],
        # multilabel: predict decides labels like the members (tuned on all OOF rows, top-1 fallback)
        "threshold": threshold,
        "at_least_one_label": first.get("at_least_one_label"),
        "fold_hash": members[0].fold_hash,
        "folds": len(np.unique(folds)),
        "n_rows": len(ids),
        "members": [
            {
                # relative first, so a copied workspace (runs/ next to the blend) still resolves
                "path": os.path.relpath(m.path.resolve(), blend_dir.resolve()),
                "absolute_path": str(m.path.resolve()),
                "weight": float(w),
                "head": m.run["head"]["name"],
                "oof": s,
            }
            for m, w, s in zip(members, weights, singles)
        ],
        "cross_fit": cross_fit_rows,  # the weights each fold's reported rows were blended with
        "provenance": provenance,
    }
    write_json_atomic(blend_dir / RUN_MANIFEST, manifest)  # last: a blend dir without it is unfinished
    return BlendResult(
        blend_dir=blend_dir, task=task, method=config.method, metric=main, metrics=names, members=member_rows,
        oof=oof_scores, n_rows=len(ids), folds=cross_fit_rows, provenance=provenance, threshold=threshold,
        warnings=notes, seconds=time.perf_counter() - started,
    )
