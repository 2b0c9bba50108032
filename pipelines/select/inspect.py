"""`inspect`: does a backbone separate the classes at all? A cross-validated k-nearest-neighbour
score on the embeddings (cosine), against the majority-class baseline, and a 2-D projection
(PCA; UMAP when installed) coloured by label, saved as a PNG.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError, InputError

METHODS = ("auto", "pca", "umap")


@dataclass
class InspectConfig:
    embeddings: str  # an embedding dir from `olymp extract`
    labels: str  # CSV with an id column and a target column
    output: str | None = None  # PNG of the 2-D projection; None: no picture
    id_col: str = "id"
    target_col: str = "label"
    method: str = "auto"  # auto (UMAP when installed, else PCA) | pca | umap
    neighbors: int = 5  # k of the k-NN score
    folds: int = 5  # CV folds of the k-NN score
    max_rows: int = 20_000  # a stratified, seeded subsample beyond this (k-NN and plot stay quick)
    seed: int = 42


@dataclass
class InspectResult:
    task: str
    n_rows: int
    dim: int
    score_name: str  # knn_accuracy (classification) | knn_r2 (regression)
    score: float  # mean over the folds
    baseline: float  # majority-class share (accuracy) or 0 (R²)
    method: str  # the projection actually used
    output: str | None

    def summary(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def project(X: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    if method not in METHODS:
        raise ConfigError(f"unknown projection '{method}'; pass --method with one of: {', '.join(METHODS)}")
    has_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not has_umap:
        raise ConfigError("UMAP is not installed; pip install umap-learn, or pass --method pca")
    if method == "umap" or (method == "auto" and has_umap):
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(X), "umap"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(X), "pca"


def draw(path: Path, points: np.ndarray, target, method: str, title: str) -> None:
    from pipelines.train.report import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    if target.is_classification:
        cmap = plt.get_cmap("tab10" if target.n_classes <= 10 else "tab20")
        for index, name in enumerate(target.classes):
            rows = target.y == index
            ax.scatter(points[rows, 0], points[rows, 1], s=6, alpha=0.7, color=cmap(index % cmap.N), label=name)
        if target.n_classes <= 20:
            ax.legend(markerscale=3, fontsize=7, loc="best")
    else:
        image = ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7, c=target.y, cmap="viridis")
        fig.colorbar(image, ax=ax, label="target")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def inspect(config: InspectConfig) -> InspectResult:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    from pipelines.train.train import TrainConfig, limit_rows, load_training_data

    data = load_training_data(TrainConfig(
        embeddings=[config.embeddings], labels=config.labels, output="", id_col=config.id_col,
        target_col=config.target_col,
    ))
    data = limit_rows(data, config.max_rows, config.seed)
    target, X = data.target, data.X
    n = len(X)
    if n < config.folds:
        raise InputError(f"only {n} labelled rows have embeddings; pass --folds {max(2, n)} or fewer")
    # Unit vectors: Euclidean neighbours are then cosine neighbours, the usual embedding geometry.
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = max(1, min(config.neighbors, n - n // config.folds - 1))
    if target.is_classification:
        counts = np.bincount(target.y)
        smallest = int(counts[counts > 0].min())
        # Stratified where every class can be in two folds; a singleton class forces plain folds.
        splitter = (StratifiedKFold(min(config.folds, smallest), shuffle=True, random_state=config.seed)
                    if smallest >= 2 else KFold(config.folds, shuffle=True, random_state=config.seed))
        scores = cross_val_score(KNeighborsClassifier(k), X, target.y, cv=splitter, scoring="accuracy")
        name, baseline = "knn_accuracy", float(counts.max() / counts.sum())
    else:
        splitter = KFold(config.folds, shuffle=True, random_state=config.seed)
        scores = cross_val_score(KNeighborsRegressor(k), X, target.y, cv=splitter, scoring="r2")
        name, baseline = "knn_r2", 0.0
    score = float(np.mean(scores))

    method = config.method
    output = None
    if config.output:
        points, method = project(X, config.method, config.seed)
        output = Path(config.output)
        title = f"{Path(config.embeddings).name}: {n} rows, {k}-NN {name.split('_')[1]} {score:.3f}"
        draw(output, points, target, method, title)
    return InspectResult(target.task, n, int(X.shape[1]), name, score, baseline, method, str(output) if output else None)
