"""Shared fixtures: tiny embedding directories and label files, written the way extract writes them."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

TEST_PREPROCESSING = {
    "input_size": [3, 160, 160],
    "interpolation": "bicubic",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "crop_pct": 0.875,
}


def write_embeddings(path, ids, vectors, errors=None, **manifest_overrides) -> Path:
    """An embedding dir like `olymp extract` writes: part-00000.parquet (id: string,
    embedding: fixed_size_list<float32>[D]), _manifest.json, and `_errors.csv` when `errors`
    (dicts or (id, path, error) tuples) are given. Manifest keys can be overridden."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    table = pa.table({
        "id": pa.array([str(i) for i in ids], type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    })
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), dim)
    pq.write_table(table, path / "part-00000.parquet")
    errors = [e if isinstance(e, dict) else dict(zip(("id", "path", "error"), e)) for e in errors or []]
    manifest = {
        "olymp_format": 1,
        "kind": "embeddings",
        "status": "complete",
        "modality": "image",
        "backbone": "test_resnet",
        "weights_sha256": "abc",
        "preprocessing": TEST_PREPROCESSING,
        "embedding_dim": dim,
        "weights_source": "random init",
        "counts": {"inputs": len(ids) + len(errors), "embedded": len(ids), "errors": len(errors)},
    }
    manifest.update(manifest_overrides)
    (path / "_manifest.json").write_text(json.dumps(manifest, indent=2))
    if errors:
        with (path / "_errors.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "path", "error"])
            writer.writeheader()
            writer.writerows(errors)
    return path


def write_csv(path, /, **columns) -> Path:
    """A CSV with the given columns (equal-length sequences), values written as text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(zip(*(columns[name] for name in names)))
    return path


def separable(n_rows: int, dim: int = 16, n_classes: int = 3, seed: int = 0):
    """Class-separable features (float32) and integer classes 0..n_classes-1."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows, n_features=dim, n_informative=min(dim, 8), n_redundant=0,
        n_classes=n_classes, n_clusters_per_class=1, class_sep=2.0, random_state=seed,
    )
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def make_embeddings():
    """Factory: make_embeddings(path, ids, vectors, errors=None, **manifest_overrides) -> path."""
    return write_embeddings


@pytest.fixture(scope="session")
def make_csv():
    """Factory: make_csv(path, col=[...], other=[...]) -> path."""
    return write_csv


@pytest.fixture(scope="session")
def make_separable():
    """Factory: make_separable(n_rows, dim=16, n_classes=3, seed=0) -> (X float32, y int)."""
    return separable


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test: olymp must work offline.
    Unix-domain sockets stay allowed: DataLoader workers pass tensors through them."""
    connect = socket.socket.connect

    def local_only(sock: socket.socket, address, *args, **kwargs):
        if sock.family == socket.AF_UNIX:
            return connect(sock, address, *args, **kwargs)
        raise AssertionError(f"olymp tried to use the network ({address})")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("olymp tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache that olymp sees through HF_HUB_CACHE."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(variable, raising=False)
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def pytest_collection_modifyitems(config, items):
    """`requires_cuda` tests run where a GPU is visible and skip themselves elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)
