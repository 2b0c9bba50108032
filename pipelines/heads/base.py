"""The one small interface every head implements: fit / predict / save / load.

A head is built for one task; classification heads take class indices 0..K-1 and always
predict an (N, K) probability matrix in that global order, even when a fold's training part
lacks a class. Regression heads predict an (N,) float vector. Model files are plain text,
JSON or safetensors: never pickle.

`fit` sees a fold's training part only, never the rows the fold is scored on. A head that
early-stops (lgbm, mlp) splits that training part itself (`inner_split`: stratified, multilabel
by iterative stratification, grouped when the run has groups), watches the inner validation
part, then refits on the whole training part for the chosen number of rounds/epochs.
"""

from __future__ import annotations

import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipelines.core.hardware import available_cores

# progress(message): one line about the fit under way, e.g. "round 50: inner-valid multi_logloss 0.81"
FitProgress = Callable[[str], None]

INNER_FOLDS = 5  # the inner validation part is one fifth of a fold's training part
# After early stopping on the inner split, train again on the whole training part for the chosen
# number of rounds/epochs (scaled to its size). Measured on CIFAR-10/ESC-10 embeddings (README).
REFIT = True


# Below this many feature values per fold, one thread beats several: OpenMP's per-tree sync
# costs more than the histogram work. Above it, only cores that are idle now are worth asking
# for: OpenMP/BLAS threads spin at every barrier, and on a busy machine a thread that waits for a
# descheduled sibling stalls the round (measured on a 2-core machine at load 16: 300 CIFAR rows
# x 1280-d, one lgbm fold, 333 s with 2 threads vs 4.6 s with 1; one logistic regression on
# 1,600 x 1280-d at load 12, 15.8 s with 2 BLAS threads vs 0.39 s with 1).
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


def inner_split(
    task: str, y: np.ndarray, n_classes: int, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(inner-train rows, inner-validation rows) of a fold's training part, drawn the way the
    run's folds are (pipelines.data.cv: stratified / iterative stratification / grouped), or None
    when the part is too small to split (then a head trains without early stopping)."""
    from pipelines.data import cv
    from pipelines.core.errors import OlympError
    from pipelines.data.tasks import Target

    classes = None if task == "regression" else [str(k) for k in range(n_classes)]
    target = Target(task, "inner split", classes, np.asarray(y))
    for n_folds in range(INNER_FOLDS, 1, -1):  # as many as the groups allow: 4 groups hold out 1, not 2 of them
        try:
            folds, _ = cv.assign_folds(target, n_folds, seed, groups)
        except OlympError:
            continue
        train, valid = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
        if len(train) and len(valid):
            return train, valid
    return None


@dataclass
class InnerData:
    """What a head's tuning search sees: a fold's training part, split once into inner-train rows
    (candidates are fitted on them) and inner-validation rows (candidates are scored on them).
    The fold's own scored rows are not in `X` at all."""

    X: np.ndarray  # the fold's training part (after the fold's --normalize/--pca)
    y: np.ndarray
    groups: np.ndarray | None  # one per row of X, or None
    fit_rows: np.ndarray  # positions into X: candidates are fitted here
    held_rows: np.ndarray  # positions into X: candidates are scored here (early stopping watches them too)
    score: Callable[[np.ndarray, np.ndarray], float]  # (y_held, predictions) -> higher is better
    deadline: float | None = None  # time.perf_counter() by which the search should end (--time-budget); None: no limit
    seconds: list[float] = field(default_factory=list)  # each candidate's fit-and-score time so far (`timed`)

    def affords(self) -> bool:
        """Whether one more candidate, taking as long as the mean of those so far, ends before the
        deadline. The first candidate is always scored."""
        if self.deadline is None or not self.seconds:
            return True
        return time.perf_counter() + sum(self.seconds) / len(self.seconds) <= self.deadline

    @contextlib.contextmanager
    def timed(self):
        """Around one candidate's fit and score: its time goes into `seconds`."""
        started = time.perf_counter()
        yield
        self.seconds.append(time.perf_counter() - started)


class Head(ABC):
    name: ClassVar[str]  # registry name, e.g. "lgbm"
    suffix: ClassVar[str]  # model file extension, e.g. ".txt"
    auto_candidates: ClassVar[int] = 4  # how many candidates `--tune auto` scores (the first ones of `candidates`)

    def __init__(
        self,
        task: str,
        n_classes: int = 0,
        params: dict | None = None,
        metric: str | None = None,
        seed: int = 42,
    ):
        self.task = task  # binary | multiclass | regression
        self.n_classes = n_classes  # K for classification, 0 for regression
        self.metric = metric  # the run's main metric (heads that early-stop watch it)
        self.seed = seed
        self.overrides = dict(params or {})  # what the user set (--param), before defaults
        self.params = self.resolve_params(task, n_classes, params or {}, metric, seed)
        self.info: dict = {}  # what fit learned worth reporting, e.g. best_iteration

    @classmethod
    @abstractmethod
    def resolve_params(cls, task: str, n_classes: int, overrides: dict, metric: str | None, seed: int) -> dict:
        """The head's defaults for this task with the user's overrides applied (and checked)."""

    @classmethod
    def is_stochastic(cls, params: dict) -> bool:
        """Whether the seed changes the fitted model under these (resolved) params; averaging
        several seeds (`--seeds`) only helps a stochastic head. Heads override when it depends."""
        return True

    # ------------------------------------------------------------------ tuning (pipelines.heads.tuning)

    @classmethod
    def candidates(cls, task: str, n_classes: int, fixed: dict, X: np.ndarray) -> list[dict]:
        """Parameter overrides worth trying on this training part, the most promising first; the
        first is {} (the defaults). Keys the user fixed (`fixed`, from --param) never appear."""
        return [{}]

    @classmethod
    def search(
        cls, inner: InnerData, candidates: list[dict], task: str, n_classes: int, fixed: dict,
        metric: str | None, seed: int,
    ) -> list[tuple[dict, float, np.ndarray]]:
        """(candidate, inner-validation score, its predictions of the held rows) of each candidate
        scored; a head may skip some (logreg stops a C path once it only gets worse), and stops
        when `inner.affords` says the next one would overrun --time-budget. Fits on
        `inner.fit_rows` only."""
        scored = []
        for candidate in candidates:
            if not inner.affords():
                break
            with inner.timed():
                head = cls(task, n_classes, {**fixed, **candidate}, metric, seed)
                head.fit_for_tuning(inner.X, inner.y, inner.fit_rows, inner.held_rows, inner.groups)
                held = inner.held_rows
                pred = head.predict(inner.X[held])
                scored.append((candidate, inner.score(inner.y[held], pred), pred))
        return scored

    def fit_for_tuning(self, X, y, fit_rows, held_rows, groups=None) -> Head:
        """Fit a candidate on the inner-train rows; heads that early-stop override this to stop on
        `held_rows` (no refit). Never used for the saved models."""
        return self.fit(X[fit_rows], y[fit_rows], None if groups is None else groups[fit_rows])

    @abstractmethod
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        progress: FitProgress | None = None,
    ) -> Head:
        """Train on a fold's training part (X, y); `groups` (one per row, or None) keep an
        early-stopping head's inner split grouped; `progress` gets a line now and then."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities in the global class order, or (N,) regression values."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the fitted model to `path` (a file ending in `suffix`)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, task: str, n_classes: int = 0) -> Head:
        """Read a model written by `save`, ready to predict."""
