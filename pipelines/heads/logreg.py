"""Linear head: StandardScaler + LogisticRegression (Ridge for regression, one-vs-rest logistic
regressions for multilabel), fitted per fold.

Saved as JSON (scaler mean/scale, coef, intercept, the class indices it saw) and predicted
with numpy, so a saved fold gives exactly what the fitted one gave.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError
from pipelines.core.io import write_text_atomic
from pipelines.heads.base import Head

LOGREG_DEFAULTS = {"C": 1.0, "max_iter": 1000}
RIDGE_DEFAULTS = {"alpha": 1.0}
RANDOMIZED_SOLVERS = ("sag", "saga", "liblinear")  # the only ones that use random_state


def _estimator(task: str):
    from sklearn.linear_model import LogisticRegression, Ridge

    return Ridge if task == "regression" else LogisticRegression


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # = 1 / (1 + exp(-x)), without overflow warnings


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class LogRegHead(Head):
    name = "logreg"
    suffix = ".json"

    @classmethod
    def resolve_params(cls, task, n_classes, overrides, metric, seed):
        defaults = RIDGE_DEFAULTS if task == "regression" else LOGREG_DEFAULTS
        estimator = _estimator(task)
        known = set(estimator().get_params()) - {"random_state"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"{estimator.__name__} has no parameter {', '.join(repr(k) for k in unknown)}; "
                f"--param takes one of: {', '.join(sorted(known))}"
            )
        return {**defaults, **overrides}

    @classmethod
    def is_stochastic(cls, params):
        # lbfgs/newton-* (the default) and Ridge's exact solvers ignore random_state
        return params.get("solver") in RANDOMIZED_SOLVERS

    def fit(self, X, y, groups=None, progress=None):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        scaler = StandardScaler().fit(X)
        self.mean, self.scale = scaler.mean_, scaler.scale_
        Z = (X - self.mean) / self.scale
        self.info = {}
        if self.task == "regression":
            model = _estimator(self.task)(**self.params).fit(Z, y)
            self.classes = None
            self.coef = np.atleast_2d(model.coef_)
            self.intercept = np.atleast_1d(model.intercept_).astype(np.float64)
            return self
        if self.task == "multilabel":
            return self._fit_one_vs_rest(Z, np.asarray(y))
        self.classes = np.unique(y).astype(np.int64)  # indices present in this training part
        if len(self.classes) == 1:  # a one-class training part: predict that class
            self.coef, self.intercept = np.zeros((0, X.shape[1])), np.zeros(0)
            return self
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = _estimator(self.task)(**self.params, random_state=self.seed).fit(Z, y)
        self.info["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.coef, self.intercept = model.coef_, model.intercept_
        return self

    def _fit_one_vs_rest(self, Z: np.ndarray, Y: np.ndarray) -> LogRegHead:
        """One logistic regression per label; a label constant in this training part gets a
        constant probability (its rate, kept off 0 and 1) instead of a model."""
        from sklearn.exceptions import ConvergenceWarning

        self.classes = None
        self.coef = np.zeros((Y.shape[1], Z.shape[1]))
        self.intercept = np.zeros(Y.shape[1])
        converged = True
        for j, column in enumerate(Y.T):
            if column.min() == column.max():
                rate = np.clip(column.mean(), 1e-3, 1 - 1e-3)
                self.intercept[j] = np.log(rate / (1 - rate))
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model = _estimator(self.task)(**self.params, random_state=self.seed).fit(Z, column)
            converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.coef[j], self.intercept[j] = model.coef_[0], model.intercept_[0]
        self.info = {"converged": converged}
        return self

    def predict(self, X):
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        if self.task == "regression":
            return Z @ self.coef[0] + self.intercept[0]
        if self.task == "multilabel":
            return _sigmoid(Z @ self.coef.T + self.intercept)
        out = np.zeros((len(Z), self.n_classes), dtype=np.float64)
        if len(self.classes) == 1:
            present = np.ones((len(Z), 1))
        elif len(self.coef) == 1:  # sklearn's binary form: one row for the larger index
            p = 1.0 / (1.0 + np.exp(-(Z @ self.coef[0] + self.intercept[0])))
            present = np.column_stack([1.0 - p, p])
        else:
            present = _softmax(Z @ self.coef.T + self.intercept)
        out[:, self.classes] = present  # classes absent from training keep probability 0
        return out

    def save(self, path):
        state = {
            "head": self.name,
            "task": self.task,
            "n_classes": self.n_classes,
            "classes": None if self.classes is None else self.classes.tolist(),  # indices seen
            "params": self.params,
            "scaler_mean": self.mean.tolist(),
            "scaler_scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }
        write_text_atomic(path, json.dumps(state))

    @classmethod
    def load(cls, path, task, n_classes=0):
        state = json.loads(Path(path).read_text())
        head = cls.__new__(cls)
        head.task, head.n_classes, head.metric, head.info = task, n_classes, None, {}
        head.params = state["params"]
        head.classes = None if state["classes"] is None else np.asarray(state["classes"], dtype=np.int64)
        head.mean = np.asarray(state["scaler_mean"], dtype=np.float64)
        head.scale = np.asarray(state["scaler_scale"], dtype=np.float64)
        d = len(head.mean)
        head.coef = np.asarray(state["coef"], dtype=np.float64).reshape(-1, d)
        head.intercept = np.asarray(state["intercept"], dtype=np.float64)
        return head
