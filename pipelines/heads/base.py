"""The one small interface every head implements: fit / predict / save / load.

A head is built for one task; classification heads take class indices 0..K-1 and always
predict an (N, K) probability matrix in that global order, even when a fold's training part
lacks a class. Regression heads predict an (N,) float vector. Model files are plain text,
JSON or safetensors: never pickle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np


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
        X_valid: np.ndarray | None = None,
        y_valid: np.ndarray | None = None,
    ) -> Head:
        """Train on (X, y); a validation part, when given, may drive early stopping."""

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
