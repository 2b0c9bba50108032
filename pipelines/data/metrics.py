"""Scores of out-of-fold predictions, by task.

Classification predictions are probability matrices (N, K) in the global class order and the
truth is class indices 0..K-1; regression predictions and truth are float vectors; multilabel
predictions are per-label probabilities (N, L) and the truth an (N, L) 0/1 matrix. Multilabel
F1 scores need a decision threshold: `tune_threshold` picks the one that maximizes micro-F1
on the out-of-fold predictions. A threshold tuned on the rows it is scored on flatters F1, so
reported F1 is cross-fitted (`cross_fit_threshold`): each fold's rows are decided at a threshold
tuned on the other folds' rows.
"""

from __future__ import annotations

import warnings

import numpy as np

from pipelines.core.errors import ConfigError

# Every metric a task reports, in the order shown when none is picked with --metric.
METRICS = {
    "binary": ("auc", "logloss", "accuracy", "f1_macro"),
    "multiclass": ("logloss", "accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "r2"),
    # lwlrap: label-weighted label-ranking average precision (Freesound audio tagging);
    # map: mean over labels of average precision; F1 at the run's threshold; logloss: mean BCE
    "multilabel": ("lwlrap", "map", "f1_micro", "f1_macro", "logloss"),
}
GREATER_IS_BETTER = {
    "auc": True, "accuracy": True, "f1_macro": True, "f1_micro": True, "r2": True, "lwlrap": True, "map": True,
    "logloss": False, "rmse": False, "mae": False,
}
DEFAULT_THRESHOLD = 0.5  # multilabel decision threshold before one is tuned
THRESHOLD_GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)  # candidates tune_threshold tries


def metrics_for(task: str, first: str | None = None) -> list[str]:
    """The task's metrics with the chosen one first; an unfit choice names the valid ones."""
    names = list(METRICS[task])
    if first is None:
        return names
    if first not in names:
        raise ConfigError(
            f"metric '{first}' does not fit a {task} task; pass --metric with one of: {', '.join(names)}"
        )
    return [first] + [name for name in names if name != first]


# The multilabel metrics that depend on the decision threshold (the others rank probabilities).
THRESHOLD_METRICS = ("f1_micro", "f1_macro")


def score(
    task: str, y_true: np.ndarray, pred: np.ndarray, names: list[str], threshold: float | np.ndarray | None = None
) -> dict[str, float]:
    """Each named metric of one set of predictions; NaN where it is undefined (one class only).
    `threshold` turns multilabel probabilities into decisions for the F1 scores (None: the default);
    an array gives one threshold per row (cross-fitted: each row's fold has its own)."""
    at = DEFAULT_THRESHOLD if threshold is None else threshold
    if isinstance(at, np.ndarray):
        at = at.reshape(-1, 1)  # one per row, broadcast over the labels
    return {name: _one(name, task, y_true, pred, at) for name in names}


def lwlrap(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (the Freesound Audio Tagging metric).

    For every (row, positive label) pair: the share of labels ranked at or above it (by the row's
    scores) that are positive; lwlrap is the mean over all such pairs, so each positive label
    counts once and rows with more labels weigh more. Ties count against the label, as in
    sklearn's `label_ranking_average_precision_score`; that score with `sample_weight` = positives
    per row is the same number, and the unweighted one is too when every row has as many labels.
    Rows without any positive label are left out."""
    y_true = np.asarray(y_true) > 0
    scores = np.asarray(scores, dtype=np.float64)
    total, pairs = 0.0, 0
    for truth, row in zip(y_true, scores):
        positives = row[truth]
        if not len(positives):
            continue
        # rank of each positive: labels scoring at least as high; hits: positives among them
        rank = (row[None, :] >= positives[:, None]).sum(axis=1)
        hits = (positives[None, :] >= positives[:, None]).sum(axis=1)
        total += float((hits / rank).sum())
        pairs += len(positives)
    return total / pairs if pairs else float("nan")


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro average precision over the labels that have a positive row (others are undefined)."""
    from sklearn.metrics import average_precision_score

    present = np.flatnonzero(np.asarray(y_true).sum(axis=0) > 0)
    if not len(present):
        return float("nan")
    return float(np.mean([average_precision_score(y_true[:, j], scores[:, j]) for j in present]))


def multilabel_decisions(proba: np.ndarray, threshold: float, at_least_one: bool = False) -> np.ndarray:
    """0/1 decisions at `threshold`; with `at_least_one`, a row with none gets its top label."""
    decisions = (np.asarray(proba) >= threshold).astype(np.int8)
    if at_least_one and len(decisions):
        empty = decisions.sum(axis=1) == 0
        decisions[np.flatnonzero(empty), np.asarray(proba)[empty].argmax(axis=1)] = 1
    return decisions


def tune_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The threshold of THRESHOLD_GRID with the best micro-F1 (the lowest among equals)."""
    truth = np.asarray(y_true) > 0
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for threshold in THRESHOLD_GRID:
        decided = proba >= threshold
        tp = float((decided & truth).sum())
        f1 = 2 * tp / (decided.sum() + truth.sum()) if (decided.sum() + truth.sum()) else 0.0
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(threshold), f1
    return best


def cross_fit_threshold(y_true: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, dict[int, float]]:
    """Per fold k: the threshold tuned on the other folds' rows, applied to fold k's rows.
    Returns one threshold per row (to score with) and each fold's threshold."""
    per_fold = {int(k): tune_threshold(y_true[folds != k], proba[folds != k]) for k in np.unique(folds)}
    return np.array([per_fold[int(k)] for k in folds], dtype=np.float64), per_fold


# How each reported number was obtained: scores.json and manifests record these under "provenance";
# `olymp report` prints them in one line (the part before " (").
PROVENANCE_OOF = "out-of-fold predictions of models that never saw the row"
PROVENANCE_THRESHOLD_CROSS_FITTED = (
    "cross-fitted over the folds (each fold's F1 at a threshold tuned on the other folds' OOF rows; "
    "the saved threshold is tuned on all OOF rows)"
)
PROVENANCE_THRESHOLD_GIVEN = "given by --threshold (not tuned)"


def provenance_line(provenance: dict[str, str]) -> str:
    """The short form `olymp report` prints: 'oof: ...; threshold: ...'."""
    return "; ".join(f"{key}: {how.split(' (')[0]}" for key, how in provenance.items())


def _multilabel(name: str, y_true: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    from sklearn import metrics as skm

    if name == "lwlrap":
        return lwlrap(y_true, pred)
    if name == "map":
        return mean_average_precision(y_true, pred)
    if name in THRESHOLD_METRICS:
        decided = multilabel_decisions(pred, threshold)
        return float(skm.f1_score(y_true, decided, average=name[3:], zero_division=0))
    if name == "logloss":
        p = np.clip(pred, 1e-7, 1 - 1e-7)
        return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))
    raise ConfigError(f"unknown metric '{name}'")


def _one(name: str, task: str, y_true: np.ndarray, pred: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined F1 of a class absent from a fold, etc.
        if task == "multilabel":
            return _multilabel(name, y_true, pred, threshold)
        if task == "regression":
            if name == "rmse":
                return float(np.sqrt(np.mean((y_true - pred) ** 2)))
            if name == "mae":
                return float(np.mean(np.abs(y_true - pred)))
            return float(skm.r2_score(y_true, pred)) if len(y_true) > 1 else float("nan")
        n_classes = pred.shape[1]
        if name == "accuracy":
            return float(np.mean(pred.argmax(axis=1) == y_true))
        if name == "f1_macro":
            return float(skm.f1_score(y_true, pred.argmax(axis=1), average="macro"))
        if name == "logloss":
            proba = np.clip(pred, 1e-15, 1.0)
            proba = proba / proba.sum(axis=1, keepdims=True)
            return float(skm.log_loss(y_true, proba, labels=np.arange(n_classes)))
        if name == "auc":
            if len(np.unique(y_true)) < 2:
                return float("nan")
            return float(skm.roc_auc_score(y_true, pred[:, 1]))
    raise ConfigError(f"unknown metric '{name}'")


def summarize(fold_scores: list[dict[str, float]], names: list[str]) -> tuple[dict, dict]:
    """Mean and standard deviation of each metric over folds (NaN folds left out)."""
    mean, std = {}, {}
    for name in names:
        values = np.array([fold[name] for fold in fold_scores], dtype=np.float64)
        values = values[~np.isnan(values)]
        mean[name] = float(values.mean()) if len(values) else float("nan")
        std[name] = float(values.std()) if len(values) else float("nan")
    return mean, std
