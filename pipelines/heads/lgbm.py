"""LightGBM head: gradient-boosted trees, early-stopped on an inner split of each fold's training part.

`default_lgbm_params` is the training recipe in one dict; `fit` adds what depends on the data
(threads, feature fraction for the width, early-stopping patience for the rows), splits the
fold's training part into inner-train / inner-validation (`inner_split`), finds the best number
of rounds on the inner part, then refits on the whole training part for that many rounds scaled
to its size. The fold's scored rows are never seen. Parameters are checked against LightGBM's
own names and aliases. Models are saved as LightGBM's text format; a multilabel head is one
binary booster per label, saved as a JSON list of those text models.
"""

from __future__ import annotations

import difflib
import json
import os
from functools import cache
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError
from pipelines.core.io import write_text_atomic
from pipelines.core.hardware import available_cores
from pipelines.heads.base import REFIT, Head, inner_split

NUM_BOOST_ROUND = 1000  # upper bound; early stopping usually ends far sooner
NO_SPLIT_ROUNDS = 100  # rounds when the training part is too small for an inner split
# Early-stopping patience: rounds without a better inner-validation score, sized to the data
# (a few hundred rows stop after 10 idle rounds, a few thousand after up to 50).
PATIENCE_MIN, PATIENCE_MAX, ROWS_PER_PATIENCE_ROUND = 10, 50, 20
# Columns per tree: at most half, and about this many on wide embeddings (1280-d -> 0.1): the
# histogram work per round scales with the columns used, and dense embedding dims are redundant.
COLUMNS_PER_TREE = 128
PROGRESS_EVERY = 25  # rounds between progress lines

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
# costs more than the histogram work. Above it, only cores that are idle now are worth asking
# for: OpenMP threads spin at every barrier, and on a busy machine a thread that waits for a
# descheduled sibling stalls the round (measured on a 2-core machine at load 16: 300 CIFAR rows
# x 1280-d, one fold, 333 s with 2 threads vs 4.6 s with 1).
SINGLE_THREAD_CELLS = 200_000


def idle_cores(cores: int) -> int:
    """Cores not busy with other work right now (the 1-minute load average, this process's own
    share left out); all of them where the load cannot be read."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return cores
    return max(1, min(cores, int(cores - max(0.0, load - 1.0) + 0.5)))


def threads_for(n_rows: int, n_features: int, n_jobs: int | None = None) -> int:
    """Threads worth using for a training part of this size on this machine now."""
    if n_rows * n_features < SINGLE_THREAD_CELLS:
        return 1
    return n_jobs or idle_cores(available_cores())


def default_lgbm_params(
    task: str, n_classes: int = 0, metric: str | None = None, seed: int = 42, n_jobs: int | None = None
) -> dict:
    """Defaults for dense 512–2048-d embeddings on a CPU: many weak, redundant features, so a
    fraction of the columns per tree (`LGBMHead.fit` sizes it to the width), 63 bins, small
    trees and a learning rate that stops early within a few hundred rounds. `num_threads` is
    every available core (LGBMHead lowers it to 1 for tiny data unless it is overridden)."""
    params = {
        "objective": OBJECTIVE[task],
        "metric": LGBM_METRIC[task].get(metric, DEFAULT_LGBM_METRIC[task]),
        "learning_rate": 0.1,
        "num_leaves": 15,
        "feature_fraction": 0.5,
        "max_bin": 63,
        "min_data_in_leaf": 10,
        "lambda_l2": 1.0,
        "num_iterations": NUM_BOOST_ROUND,
        "early_stopping_round": PATIENCE_MAX,
        "first_metric_only": True,
        "num_threads": n_jobs or available_cores(),
        "force_col_wise": True,  # dense and wide: skip LightGBM's row/col-wise timing test
        "seed": seed,
        "verbosity": -1,
    }
    if task == "multiclass":
        params["num_class"] = n_classes
    return params


def feature_fraction_for(n_features: int) -> float:
    """Share of the columns each tree sees: half on narrow data, ~COLUMNS_PER_TREE on wide."""
    return float(min(0.5, max(COLUMNS_PER_TREE / max(n_features, 1), 0.05)))


def patience_for(n_rows: int) -> int:
    return int(min(PATIENCE_MAX, max(PATIENCE_MIN, n_rows // ROWS_PER_PATIENCE_ROUND)))


@cache
def lightgbm_names() -> dict[str, str]:
    """Every parameter name LightGBM accepts (canonical names and aliases) -> its canonical
    name, as the installed library reports them (LGBM_DumpParamAliases); {} if it cannot."""
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
    except (ImportError, AttributeError):  # private helper moved: names go unchecked
        return {}
    return {alias: name for name, aliases in table.items() for alias in (name, *aliases)}


def _aliases(key: str) -> set[str]:
    """LightGBM's names for one parameter (n_estimators, num_boost_round, ... for num_iterations)."""
    names = lightgbm_names()
    canonical = names.get(key, key)
    return {alias for alias, name in names.items() if name == canonical} | {key}


def check_names(overrides: dict) -> None:
    """Refuse a parameter LightGBM does not know, naming the nearest one it does."""
    names = lightgbm_names()
    if not names:
        return
    for key in overrides:
        if key in names:
            continue
        close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
        hint = f"did you mean --param {names[close[0]]}=...?" if close else "see https://lightgbm.readthedocs.io/en/stable/Parameters.html"
        raise ConfigError(f"LightGBM has no parameter '{key}'; {hint} (--param takes LightGBM's parameter names and aliases)")


def _value(params: dict, key: str, default=None):
    """A parameter's value under any of its aliases."""
    return next((params[k] for k in _aliases(key) if k in params), default)


def _set(params: dict, key: str, value) -> dict:
    """`params` with `key` set to `value` and its aliases removed."""
    out = {k: v for k, v in params.items() if k not in _aliases(key)}
    if value is not None:
        out[key] = value
    return out


def _progress_callback(progress, every: int, label: str):
    def report(env) -> None:
        done = env.iteration + 1
        if done % every and done != env.end_iteration:
            return
        scores = ", ".join(f"{name} {value:.4f}" for _, name, value, _ in env.evaluation_result_list or [])
        prefix = f"{label} " if label else ""
        progress(f"{prefix}round {done}/{env.end_iteration}" + (f": inner-valid {scores}" if scores else ""))

    return report


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
        check_names(overrides)
        return _merge(default_lgbm_params(task, n_classes, metric, seed), overrides)

    @classmethod
    def is_stochastic(cls, params):
        # the seed only matters through column/row subsampling or random split thresholds
        def value(key, default):
            return _value(params, key, default)

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

    def _sized(self, X: np.ndarray) -> None:
        """Data-dependent defaults, unless the user set them (the manifest records the result)."""
        given = set(self.overrides)
        if not _aliases("num_threads") & given:
            self.params["num_threads"] = threads_for(*X.shape)
        if not _aliases("feature_fraction") & given:
            self.params["feature_fraction"] = feature_fraction_for(X.shape[1])

    def _train(self, params: dict, X, y, valid=None, label: str = "", progress=None):
        import lightgbm as lgb

        train_set = lgb.Dataset(X, label=y)
        valid_sets = None if valid is None else [lgb.Dataset(valid[0], label=valid[1], reference=train_set)]
        if valid is None:
            params = _set(params, "early_stopping_round", None)
        callbacks = [] if progress is None else [_progress_callback(progress, PROGRESS_EVERY, label)]
        try:
            return lgb.train(params, train_set, valid_sets=valid_sets, callbacks=callbacks)
        except lgb.basic.LightGBMError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"LightGBM refused the parameters ({reason}); fix the --param values") from None

    def _fit_one(self, X, y, split, label: str, progress) -> tuple:
        """One booster on the training part: rounds chosen on the inner split, then (REFIT) the
        whole part for that many rounds scaled to its size. Returns (booster, inner best, trees)."""
        params = dict(self.params)
        if split is None:  # too few rows to hold some out: a fixed, modest number of rounds
            if not _aliases("num_iterations") & set(self.overrides):
                params = _set(params, "num_iterations", NO_SPLIT_ROUNDS)
            booster = self._train(params, X, y, label=label, progress=progress)
            return booster, 0, booster.current_iteration()
        inner, held = split
        booster = self._train(params, X[inner], y[inner], (X[held], y[held]), label, progress)
        best = int(booster.best_iteration or booster.current_iteration())
        if not REFIT:
            return booster, best, best
        rounds = max(1, round(best * len(X) / len(inner)))
        params = _set(_set(params, "early_stopping_round", None), "num_iterations", rounds)
        refit = self._train(params, X, y, label=f"{label} refit".strip(), progress=progress)
        return refit, best, refit.current_iteration()

    def fit(self, X, y, groups=None, progress=None):
        self._sized(X)
        split = inner_split(self.task, y, self.n_classes, self.seed, groups)
        if split is not None and not _aliases("early_stopping_round") & set(self.overrides):
            self.params["early_stopping_round"] = patience_for(len(split[0]))
        if self.task != "multilabel":
            self.booster, best, trees = self._fit_one(X, y, split, "", progress)
            self.info = {"best_iteration": int(trees), "inner_best_iteration": int(best)}
            return self
        # one binary booster per label (one inner split for all); a label constant in this training part gets its rate
        self.boosters, self.constants, bests, iterations = [], [], [], []
        for j in range(y.shape[1]):
            column = y[:, j]
            if column.min() == column.max():
                self.boosters.append(None)
                self.constants.append(float(np.clip(column.mean(), 1e-3, 1 - 1e-3)))
                continue
            booster, best, trees = self._fit_one(X, column, split, f"label {j + 1}/{y.shape[1]}", progress)
            self.boosters.append(booster)
            self.constants.append(None)
            bests.append(best)
            iterations.append(trees)
        self.info = {
            "best_iteration": round(float(np.mean(iterations))) if iterations else 0,
            "inner_best_iteration": round(float(np.mean(bests))) if bests else 0,
        }
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
            write_text_atomic(path, self.booster.model_to_string())  # the best iteration's trees only
            return
        models = [None if b is None else b.model_to_string() for b in self.boosters]
        write_text_atomic(path, json.dumps({"head": self.name, "task": self.task, "models": models, "constants": self.constants}))

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
