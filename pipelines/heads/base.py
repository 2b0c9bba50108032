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

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

# progress(message): one line about the fit under way, e.g. "round 50: inner-valid multi_logloss 0.81"
FitProgress = Callable[[str], None]

INNER_FOLDS = 5  # the inner validation part is one fifth of a fold's training part
# After early stopping on the inner split, train again on the whole training part for the chosen
# number of rounds/epochs (scaled to its size). Measured on CIFAR-10/ESC-10 embeddings (README).
REFIT = True


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
    for n_folds in (INNER_FOLDS, 3, 2):
        try:
            folds, _ = cv.assign_folds(target, n_folds, seed, groups)
        except OlympError:
            continue
        train, valid = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
        if len(train) and len(valid):
            return train, valid
    return None


class Head(ABC):
    name: ClassVar[str]  # registry name, e.g. "lgbm"
    suffix: ClassVar[str]  # model file extension, e.g. ".txt"

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
