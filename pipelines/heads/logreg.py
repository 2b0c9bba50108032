"""Linear head: scaling + LogisticRegression (Ridge for regression, one-vs-rest logistic
regressions for multilabel), fitted per fold.

`scaling` (a head parameter): standard (z-score with the training part's mean/std, the
default), l2 (each row divided by its norm) or none. Tuning (`--tune`, pipelines.heads.tuning)
searches scaling x C on a log grid scaled to the data (C times the mean squared row norm of the
scaled training part runs 0.03 ... 1000, so one grid fits any embedding width or scale), walking
each scaling's C path upward with warm starts and stopping once the inner score has fallen
twice in a row: the whole search costs a few fits.

Saved as JSON (scaling, scaler mean/scale, coef, intercept, the class indices it saw) and
predicted with numpy, so a saved fold gives exactly what the fitted one gave. BLAS runs on the
threads `threads_for` allows (one on small data or a busy machine: spinning threads stall).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError
from pipelines.core.io import write_text_atomic
from pipelines.heads.base import Head, threads_for

LOGREG_DEFAULTS = {"C": 1.0, "max_iter": 1000, "scaling": "standard"}
RIDGE_DEFAULTS = {"alpha": 1.0, "scaling": "standard"}
RANDOMIZED_SOLVERS = ("sag", "saga", "liblinear")  # the only ones that use random_state
SCALINGS = ("standard", "l2", "none")
# Tuning grid: C x (mean squared row norm of the scaled data) on a log grid (logreg), and
# alpha / that norm for ridge; best on CIFAR-10/ESC-10 Lite0 embeddings was near 3-10 (README).
C_GRID = tuple(float(f"{v:.3g}") for v in np.logspace(-1.5, 3, 10))
ALPHA_GRID = tuple(float(f"{v:.3g}") for v in np.logspace(-3, 2, 11))
PATH_PATIENCE = 2  # grid points in a row without a better inner score end a scaling's C path


def _estimator_params(params: dict) -> dict:
    return {key: value for key, value in params.items() if key != "scaling"}


def l2_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def data_scale(X: np.ndarray, scaling: str) -> float:
    """Mean squared row norm of X after `scaling` (what C and alpha are relative to)."""
    X = np.asarray(X, dtype=np.float64)
    if scaling == "l2":
        return 1.0
    if scaling == "standard":
        return float(max(1, int((X.std(axis=0) > 1e-12).sum())))
    return float(max(np.mean(np.sum(X * X, axis=1)), 1e-12))


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
    auto_candidates = len(SCALINGS) * len(C_GRID) + 1  # the whole grid: the C paths stop early on their own

    @classmethod
    def resolve_params(cls, task, n_classes, overrides, metric, seed):
        defaults = RIDGE_DEFAULTS if task == "regression" else LOGREG_DEFAULTS
        estimator = _estimator(task)
        known = (set(estimator().get_params()) - {"random_state"}) | {"scaling"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"{estimator.__name__} has no parameter {', '.join(repr(k) for k in unknown)}; "
                f"--param takes one of: {', '.join(sorted(known))}"
            )
        params = {**defaults, **overrides}
        if params["scaling"] not in SCALINGS:
            raise ConfigError(f"--param scaling={params['scaling']!r} is unknown; pass one of: {', '.join(SCALINGS)}")
        return params

    # ------------------------------------------------------------------ tuning

    @classmethod
    def candidates(cls, task, n_classes, fixed, X):
        """scaling x C (alpha for ridge) on the data-relative grid, ordered so that the first N
        are the most promising (grid points nearest the usual best, every scaling in turn), with
        the defaults first."""
        key, grid, centre = ("alpha", ALPHA_GRID, 0.01) if task == "regression" else ("C", C_GRID, 3.0)
        scalings = [fixed["scaling"]] if "scaling" in fixed else list(SCALINGS)
        if key in fixed:
            return [{}] + [{"scaling": scaling} for scaling in scalings if "scaling" not in fixed]
        ranked = []
        for i, scaling in enumerate(scalings):
            scale = data_scale(X, scaling)
            for point in grid:
                value = point * scale if key == "alpha" else point / scale
                ranked.append((abs(np.log10(point / centre)), i, {"scaling": scaling, key: float(f"{value:.3g}")}))
        ranked.sort(key=lambda entry: entry[:2])
        candidates = [candidate for _, _, candidate in ranked]
        if "scaling" in fixed:
            candidates = [{k: v for k, v in c.items() if k != "scaling"} for c in candidates]
        return [{}] + candidates

    @classmethod
    def search(cls, inner, candidates, task, n_classes, fixed, metric, seed):
        """Per scaling, the candidates by increasing C (decreasing alpha), each fit warm-started
        from the last; a path stops after PATH_PATIENCE points without a better score."""
        key = "alpha" if task == "regression" else "C"
        resolved = [cls.resolve_params(task, n_classes, {**fixed, **candidate}, metric, seed) for candidate in candidates]
        paths: dict[str, list[int]] = {}
        for i, params in enumerate(resolved):
            paths.setdefault(params["scaling"], []).append(i)
        X_fit, y_fit = inner.X[inner.fit_rows], inner.y[inner.fit_rows]
        X_held, y_held = inner.X[inner.held_rows], inner.y[inner.held_rows]
        scored = []
        with _threads(X_fit):
            for members in paths.values():
                members.sort(key=lambda i: resolved[i][key] if key == "C" else -resolved[i][key])
                head, best, since = cls(task, n_classes, resolved[members[0]], metric, seed), -np.inf, 0
                head.warm = {}
                for i in members:
                    if not inner.affords():
                        return scored
                    with inner.timed():
                        head.params = resolved[i]
                        head._fit(X_fit, y_fit)
                        pred = head.predict(X_held)
                        value = inner.score(y_held, pred)
                        scored.append((candidates[i], value, pred))
                    best, since = (value, 0) if value > best else (best, since + 1)
                    if since >= PATH_PATIENCE:
                        break
        return scored

    @classmethod
    def is_stochastic(cls, params):
        # lbfgs/newton-* (the default) and Ridge's exact solvers ignore random_state
        return params.get("solver") in RANDOMIZED_SOLVERS

    def _model(self, slot, **extra):
        """An estimator for this fit; during a tuning path (`self.warm`), the same one as for the
        previous C, so that lbfgs starts from its solution."""
        warm = getattr(self, "warm", None)
        params = {**_estimator_params(self.params), **extra}
        if warm is None:
            return _estimator(self.task)(**params)
        if slot not in warm:
            warm[slot] = _estimator(self.task)(**params, **({} if self.task == "regression" else {"warm_start": True}))
        return warm[slot].set_params(**params)

    def fit(self, X, y, groups=None, progress=None):
        with _threads(X):
            return self._fit(X, y)

    def _fit(self, X, y):
        from sklearn.exceptions import ConvergenceWarning

        X = np.asarray(X, dtype=np.float64)
        scaling = self.params.get("scaling", "standard")
        if scaling == "l2":
            X = l2_rows(X)
        if scaling == "standard":
            self.mean, self.scale = X.mean(axis=0), X.std(axis=0)
            self.scale[self.scale < 1e-12] = 1.0  # as StandardScaler: constant features stay 0
        else:
            self.mean, self.scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Z = (X - self.mean) / self.scale
        self.info = {}
        if self.task == "regression":
            model = self._model("ridge").fit(Z, y)
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
            model = self._model("all", random_state=self.seed).fit(Z, y)
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
                model = self._model(j, random_state=self.seed).fit(Z, column)
            converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.coef[j], self.intercept[j] = model.coef_[0], model.intercept_[0]
        self.info = {"converged": converged}
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.params.get("scaling", "standard") == "l2":
            X = l2_rows(X)
        Z = (X - self.mean) / self.scale
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


def _threads(X):
    """BLAS limited to the threads worth using for this size on this machine now."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads_for(*np.shape(X)))
