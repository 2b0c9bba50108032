"""One seeded, stratified subsample of rows (train-head --limit, olymp run --smoke, inspect's
--max-rows, recommend's trial sample)."""

from __future__ import annotations

import numpy as np


def subsample_rows(y: np.ndarray, limit: int, seed: int, stratify: bool) -> np.ndarray:
    """Sorted positions of `limit` rows, the same for the same seed. Stratified: every class
    keeps its share (rounded), and each class appears before any class appears twice as often."""
    n = len(y)
    if limit >= n:
        return np.arange(n)
    order = np.random.default_rng(seed).permutation(n)
    if not stratify:
        return np.sort(order[:limit])
    # Each row's quantile within its class (in the shuffled order): taking the smallest
    # quantiles first draws every class in proportion.
    quantile = np.empty(n)
    shuffled_y = y[order]
    for value in np.unique(y):
        members = order[shuffled_y == value]
        quantile[members] = (np.arange(len(members)) + 0.5) / len(members)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return np.sort(np.lexsort((rank, quantile))[:limit])
