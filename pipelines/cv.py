"""Cross-validation folds: one fold number per row, decided once and saved with the run.

Classification uses StratifiedKFold, regression KFold; with a group column, rows of one group
stay in one fold (StratifiedGroupKFold / GroupKFold).
"""

from __future__ import annotations

import warnings

import numpy as np

from pipelines.errors import ConfigError, InputError
from pipelines.tasks import Target


def assign_folds(
    target: Target, n_folds: int, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Fold index (0..n_folds-1) of every row, and warnings worth showing the user."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n_rows = len(target.y)
    if n_folds < 2:
        raise ConfigError(f"--folds {n_folds} leaves nothing to validate on; pass --folds 2 or more")
    if n_rows < n_folds:
        raise InputError(f"only {n_rows} labelled rows for {n_folds} folds; pass --folds {max(2, n_rows)} or fewer")
    notes = []
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_folds:
            raise InputError(
                f"only {n_groups} distinct groups for {n_folds} folds; pass --folds {n_groups} or fewer"
            )
    if target.is_classification:
        counts = np.bincount(target.y, minlength=target.n_classes)
        if counts.max() < n_folds:
            raise InputError(
                f"every class has fewer than {n_folds} rows; pass --folds {max(2, int(counts.max()))}"
            )
        rare = [(target.classes[k], int(c)) for k, c in enumerate(counts) if c < n_folds]
        if rare:
            shown = ", ".join(f"'{name}': {c}" for name, c in rare[:5]) + (", ..." if len(rare) > 5 else "")
            notes.append(
                f"{len(rare)} class(es) have fewer rows than --folds {n_folds} ({shown}); "
                "a fold whose training part lacks a class predicts probability 0 for it"
            )
        splitter = (
            StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
            if groups is not None
            else StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        )
    else:
        splitter = (
            GroupKFold(n_folds, shuffle=True, random_state=seed)
            if groups is not None
            else KFold(n_folds, shuffle=True, random_state=seed)
        )

    folds = np.full(n_rows, -1, dtype=np.int64)
    placeholder = np.zeros((n_rows, 1), dtype=np.float32)  # splitters only look at y and groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" — reported above
        for k, (_, valid) in enumerate(splitter.split(placeholder, target.y, groups)):
            folds[valid] = k
    empty = [k for k in range(n_folds) if not np.any(folds == k)]
    if empty:
        raise InputError(f"fold(s) {empty} got no rows; pass a smaller --folds")
    return folds, notes
