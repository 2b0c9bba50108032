"""Scores of out-of-fold predictions, by task.

Classification predictions are probability matrices (N, K) in the global class order and the
truth is class indices 0..K-1; regression predictions and truth are float vectors.
"""

from __future__ import annotations

import warnings

import numpy as np

from pipelines.errors import ConfigError

# Every metric a task reports, in the order shown when none is picked with --metric.
METRICS = {
    "binary": ("auc", "logloss", "accuracy", "f1_macro"),
    "multiclass": ("logloss", "accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "r2"),
}
GREATER_IS_BETTER = {
    "auc": True, "accuracy": True, "f1_macro": True, "r2": True,
    "logloss": False, "rmse": False, "mae": False,
}


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


def score(task: str, y_true: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, float]:
    """Each named metric of one set of predictions; NaN where it is undefined (one class only)."""
    return {name: _one(name, task, y_true, pred) for name in names}


def _one(name: str, task: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined F1 of a class absent from a fold, etc.
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
