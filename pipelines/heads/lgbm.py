"""LightGBM head: gradient-boosted trees with early stopping on each fold's validation part.

`default_lgbm_params` is the whole training recipe in one dict (rounds and early stopping
included), so a fold is exactly `lgb.train(params, train_set, valid_sets=[valid_set])` and a
hand-written loop can reuse it. Models are saved as LightGBM's own text format; a multilabel
head is one binary booster per label, saved as a JSON list of those text models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.hardware import available_cores
from pipelines.heads.base import Head

NUM_BOOST_ROUND = 2000  # upper bound; early stopping usually ends far sooner
EARLY_STOPPING_ROUNDS = 100

OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression", "multilabel": "binary"}
# olymp metric -> LightGBM metric watched for early stopping; others use the task's default.
LGBM_METRIC = {
    "binary": {"auc": "auc", "logloss": "binary_logloss", "accuracy": "binary_error"},
    "multiclass": {"logloss": "multi_logloss", "accuracy": "multi_error"},
    "regression": {"rmse": "rmse", "mae": "l1", "r2": "l2"},
    "multilabel": {"map": "average_precision", "logloss": "binary_logloss"},  # per label's booster
}
DEFAULT_LGBM_METRIC = {
    "binary": "binary_logloss", "multiclass": "multi_logloss", "regression": "l2", "multilabel": "binary_logloss",
}


# Below this many feature values per fold, one thread beats several: OpenMP's per-tree sync
# costs more than the histogram work, and on a busy machine spinning threads stall each other.
SINGLE_THREAD_CELLS = 200_000


def threads_for(n_rows: int, n_features: int, n_jobs: int | None = None) -> int:
    """Threads worth using for a training part of this size."""
    return 1 if n_rows * n_features < SINGLE_THREAD_CELLS else (n_jobs or available_cores())


def default_lgbm_params(
    task: str, n_classes: int = 0, metric: str | None = None, seed: int = 42, n_jobs: int | None = None
) -> dict:
    """Defaults for dense 512–2048-d embeddings: many weak, decorrelated features, so half the
    columns per tree, moderate leaves and a slow learning rate stopped early. `num_threads` is
    every available core (LGBMHead lowers it to 1 for tiny data unless it is overridden)."""
    params = {
        "objective": OBJECTIVE[task],
        "metric": LGBM_METRIC[task].get(metric, DEFAULT_LGBM_METRIC[task]),
        "learning_rate": 0.05,
        "num_leaves": 31,
        "feature_fraction": 0.5,
        "min_data_in_leaf": 10,
        "lambda_l2": 1.0,
        "num_iterations": NUM_BOOST_ROUND,
        "early_stopping_round": EARLY_STOPPING_ROUNDS,
        "first_metric_only": True,
        "num_threads": n_jobs or available_cores(),
        "force_col_wise": True,  # dense and wide: skip LightGBM's row/col-wise timing test
        "seed": seed,
        "verbosity": -1,
    }
    if task == "multiclass":
        params["num_class"] = n_classes
    return params


def _aliases(key: str) -> set[str]:
    """LightGBM's names for one parameter (n_estimators, num_boost_round, ... for num_iterations)."""
    try:
        from lightgbm.basic import _ConfigAliases
    except ImportError:  # private helper moved: exact names only
        return {key}
    return set(_ConfigAliases.get(key))


def _merge(defaults: dict, overrides: dict) -> dict:
    """Apply overrides given under any alias: a default under another alias would otherwise
    win over the user's value."""
    merged = {k: v for k, v in defaults.items() if not (_aliases(k) & set(overrides))}
    merged.update(overrides)
    return merged


class LGBMHead(Head):
    name = "lgbm"
    suffix = ".txt"

    @classmethod
    def resolve_params(cls, task, n_classes, overrides, metric, seed):
        return _merge(default_lgbm_params(task, n_classes, metric, seed), overrides)

    @classmethod
    def is_stochastic(cls, params):
        # the seed only matters through column/row subsampling or random split thresholds
        def value(key, default):
            return next((params[k] for k in _aliases(key) | {key} if k in params), default)

        return (
            float(value("feature_fraction", 1.0)) < 1.0
            or float(value("feature_fraction_bynode", 1.0)) < 1.0
            or (float(value("bagging_fraction", 1.0)) < 1.0 and int(value("bagging_freq", 0)) > 0)
            or bool(value("extra_trees", False))
        )

    def __init__(self, task, n_classes=0, params=None, metric=None, seed=42):
        super().__init__(task, n_classes, params, metric, seed)
        if task == "multilabel":
            self.suffix = ".json"  # several text models in one file

    def _train(self, X, y, X_valid, y_valid):
        import lightgbm as lgb

        params = dict(self.params)
        train_set = lgb.Dataset(X, label=y)
        valid_sets = None
        if X_valid is not None and len(X_valid):
            valid_sets = [lgb.Dataset(X_valid, label=y_valid, reference=train_set)]
        else:
            params.pop("early_stopping_round", None)
        return lgb.train(params, train_set, valid_sets=valid_sets)

    def fit(self, X, y, X_valid=None, y_valid=None):
        if not _aliases("num_threads") & set(self.overrides):
            self.params["num_threads"] = threads_for(*X.shape)
        if self.task != "multilabel":
            self.booster = self._train(X, y, X_valid, y_valid)
            self.info = {"best_iteration": int(self.booster.best_iteration or self.booster.current_iteration())}
            return self
        # one binary booster per label; a label constant in this training part gets its rate
        self.boosters, self.constants, iterations = [], [], []
        for j in range(y.shape[1]):
            column = y[:, j]
            if column.min() == column.max():
                self.boosters.append(None)
                self.constants.append(float(np.clip(column.mean(), 1e-3, 1 - 1e-3)))
                continue
            booster = self._train(X, column, X_valid, None if y_valid is None else y_valid[:, j])
            self.boosters.append(booster)
            self.constants.append(None)
            iterations.append(booster.best_iteration or booster.current_iteration())
        self.info = {"best_iteration": round(float(np.mean(iterations))) if iterations else 0}
        return self

    def predict(self, X):
        threads = threads_for(*X.shape)
        if self.task == "multilabel":
            return np.column_stack([
                np.full(len(X), constant) if booster is None else booster.predict(X, num_threads=threads)
                for booster, constant in zip(self.boosters, self.constants)
            ])
        pred = self.booster.predict(X, num_threads=threads)
        if self.task == "binary":
            return np.column_stack([1.0 - pred, pred])
        return pred

    def save(self, path):
        if self.task != "multilabel":
            self.booster.save_model(str(path))  # keeps the best iteration's trees only
            return
        models = [None if b is None else b.model_to_string() for b in self.boosters]
        Path(path).write_text(json.dumps({"head": self.name, "task": self.task, "models": models, "constants": self.constants}))

    @classmethod
    def load(cls, path, task, n_classes=0):
        import lightgbm as lgb

        head = cls.__new__(cls)
        head.task, head.n_classes, head.metric, head.params, head.info = task, n_classes, None, {}, {}
        if task == "multilabel":
            state = json.loads(Path(path).read_text())
            head.boosters = [None if text is None else lgb.Booster(model_str=text) for text in state["models"]]
            head.constants = state["constants"]
            return head
        head.booster = lgb.Booster(model_file=str(Path(path)))
        return head
