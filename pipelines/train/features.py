"""Feature transforms fitted inside each fold: per-source normalization, then optional PCA.

The embedding sets are concatenated in the given order (one *source* block each), then:

- `normalize="none"`: raw values (trees do not care about scale).
- `normalize="l2"`: each source's vector is divided by its L2 norm, row by row, so every
  source has norm 1 in every row.
- `normalize="standard"`: each feature is z-scored with the training part's mean and std, and
  each source block is divided by sqrt(its width), so every source carries total variance 1:
  a 2048-d source does not drown a 128-d one (in PCA, distances, linear and MLP heads).
- `pca=N`: PCA fitted on the normalized training part keeps N components.

`fit` only ever sees a fold's training rows; the fitted state is saved as .npz of plain float
arrays (read back with `np.load(allow_pickle=False)`) so `predict` applies exactly the same map.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError, InputError

NORMALIZE = ("none", "l2", "standard")
TRANSFORMS_DIR = "transforms"  # inside the run dir: one fold-K.npz per fold


@dataclass(frozen=True)
class FeatureSpec:
    normalize: str = "none"  # none | l2 | standard (see the module docstring)
    pca: int | None = None  # PCA components kept after normalization; None: no PCA

    @property
    def is_identity(self) -> bool:
        return self.normalize == "none" and not self.pca

    def check(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"unknown --normalize '{self.normalize}'; pass one of: {', '.join(NORMALIZE)}")
        if self.pca is not None and self.pca < 1:
            raise ConfigError(f"--pca {self.pca} keeps no component; pass --pca 1 or more, or drop it")

    def check_size(self, n_train_rows: int, n_features: int) -> None:
        """Refuse a PCA larger than the smallest fold's training part allows, before any work."""
        limit = min(n_train_rows, n_features)
        if self.pca and self.pca > limit:
            raise ConfigError(
                f"--pca {self.pca} asks for more components than a fold's training part allows "
                f"({n_train_rows} rows x {n_features} features); pass --pca {limit} or fewer"
            )

    def describe(self, source_dims: list[int]) -> dict:
        """What the run manifest records."""
        return {"normalize": self.normalize, "pca": self.pca, "source_dims": [int(d) for d in source_dims]}


def _blocks(source_dims: list[int]) -> list[slice]:
    edges = np.cumsum([0, *source_dims])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


@dataclass
class FeatureTransform:
    source_dims: list[int]  # width of each source block, in concatenation order
    normalize: str
    mean: np.ndarray | None = None  # (D,) training-part mean (standard)
    scale: np.ndarray | None = None  # (D,) std * sqrt(block width) (standard)
    pca_mean: np.ndarray | None = None  # (D,) mean of the normalized training part
    pca_components: np.ndarray | None = None  # (N, D)

    @property
    def n_outputs(self) -> int:
        return int(self.pca_components.shape[0]) if self.pca_components is not None else int(sum(self.source_dims))

    @classmethod
    def fit(cls, X: np.ndarray, source_dims: list[int], spec: FeatureSpec) -> FeatureTransform:
        """Fit on training rows only (the caller passes a fold's training part)."""
        X = np.asarray(X, dtype=np.float64)
        fitted = cls(list(map(int, source_dims)), spec.normalize)
        if spec.normalize == "standard":
            mean, std = X.mean(axis=0), X.std(axis=0)
            std[std == 0] = 1.0  # a constant feature stays 0 instead of dividing by zero
            width = np.concatenate([np.full(d, np.sqrt(d)) for d in fitted.source_dims])
            fitted.mean, fitted.scale = mean, std * width
        if spec.pca:
            Z = fitted._normalize(X)
            spec.check_size(*Z.shape)
            from sklearn.decomposition import PCA

            pca = PCA(n_components=spec.pca, svd_solver="full").fit(Z)  # full SVD: deterministic
            fitted.pca_mean, fitted.pca_components = pca.mean_, pca.components_
        return fitted

    def _normalize(self, X: np.ndarray) -> np.ndarray:
        if self.normalize == "standard":
            return (X - self.mean) / self.scale
        if self.normalize == "l2":
            out = X.copy()
            for block in _blocks(self.source_dims):
                norms = np.linalg.norm(out[:, block], axis=1, keepdims=True)
                out[:, block] /= np.where(norms > 0, norms, 1.0)
            return out
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != sum(self.source_dims):
            raise InputError(
                f"features have {X.shape[1]} columns, the fitted transform expects {sum(self.source_dims)}; "
                "pass the same embedding sets as training, in the same order"
            )
        Z = self._normalize(X)
        if self.pca_components is not None:
            Z = (Z - self.pca_mean) @ self.pca_components.T
        return np.ascontiguousarray(Z, dtype=np.float32)

    def save(self, path: str | Path) -> None:
        arrays = {"source_dims": np.asarray(self.source_dims, dtype=np.int64),
                  "normalize": np.asarray(NORMALIZE.index(self.normalize), dtype=np.int64)}
        for name in ("mean", "scale", "pca_mean", "pca_components"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=np.float64)
        with Path(path).open("wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> FeatureTransform:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path} is missing; re-run olymp train-head to rebuild the run")
        with np.load(path, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
        return cls(
            source_dims=stored["source_dims"].tolist(),
            normalize=NORMALIZE[int(stored["normalize"])],
            **{name: stored.get(name) for name in ("mean", "scale", "pca_mean", "pca_components")},
        )


def transform_file(fold: int) -> str:
    """A fold's transform, relative to the run dir."""
    return f"{TRANSFORMS_DIR}/fold-{fold}.npz"


def run_transforms(run_dir: str | Path, run: dict) -> list[FeatureTransform | None]:
    """Per fold: the fitted transform of a run, or None where it used raw features (older runs too)."""
    features = run.get("features") or {}
    files = features.get("transforms")
    if not files:
        return [None] * int(run.get("folds", 0) or 0)
    return [FeatureTransform.load(Path(run_dir) / name) for name in files]
