"""Cross-validation folds: one fold number per row, decided once and saved with the run.

Classification uses StratifiedKFold, regression KFold; with a group column, rows of one group
stay in one fold (StratifiedGroupKFold / GroupKFold).
"""

from __future__ import annotations

import warnings
from pathlib import Path

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


# --------------------------------------------------------------------------- fold reuse

def fold_hash(ids: np.ndarray, folds: np.ndarray) -> str:
    """SHA-256 of the (id, fold) pairs, independent of row order: equal hashes mean two runs
    validated every id in the same fold, so their out-of-fold predictions are comparable."""
    import hashlib

    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    text = "".join(f"{ids[i]}\t{int(folds[i])}\n" for i in order)
    return hashlib.sha256(text.encode()).hexdigest()


def read_folds(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, folds) of a run's folds.csv."""
    import pandas as pd

    path = Path(run_dir) / "folds.csv"
    if not path.is_file():
        raise InputError(f"{run_dir} has no folds.csv; pass --folds-from with a train-head run directory")
    frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    if list(frame.columns[:2]) != ["id", "fold"]:
        raise InputError(f"{path} does not start with columns id, fold; pass --folds-from with a train-head run directory")
    return frame["id"].to_numpy(dtype=object), frame["fold"].to_numpy(dtype=np.int64)


def folds_from(run_dir: str | Path, ids: np.ndarray) -> np.ndarray:
    """The fold of every id, taken from another run; refused unless both hold exactly the same ids."""
    their_ids, their_folds = read_folds(run_dir)
    ours, theirs = set(ids.tolist()), set(their_ids.tolist())
    if ours != theirs:
        only_here, only_there = len(ours - theirs), len(theirs - ours)
        raise InputError(
            f"--folds-from {run_dir}: ids differ ({only_here} only in this run, {only_there} only in {run_dir}); "
            "train on the same labels and embeddings as that run, or drop --folds-from"
        )
    import pandas as pd

    return their_folds[pd.Index(their_ids).get_indexer(ids)]
