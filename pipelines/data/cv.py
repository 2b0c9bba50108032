"""Cross-validation folds: one fold number per row, decided once and saved with the run.

Classification uses StratifiedKFold, regression KFold, multilabel iterative stratification
(Sechidis et al. 2011, `iterative_stratification`); with a group column, rows of one group stay
in one fold (StratifiedGroupKFold / GroupKFold / iterative stratification over whole groups),
which `check_groups_within_folds` verifies on every assignment.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pipelines.core.errors import ConfigError, InputError
from pipelines.data.tasks import Target

# Warn when one group holds more than this share of a fold's rows: that fold is mostly one group.
LARGE_GROUP_SHARE_OF_FOLD = 0.5
# Warn when the largest fold has this many times the rows of the smallest.
FOLD_SIZE_RATIO = 1.5


def _rare_note(names: list[str], counts: np.ndarray, n_folds: int, what: str, consequence: str) -> list[str]:
    """One warning listing the classes/labels with fewer rows than folds (the first five shown)."""
    rare = [(names[k], int(c)) for k, c in enumerate(counts) if c < n_folds]
    if not rare:
        return []
    shown = ", ".join(f"'{name}': {c}" for name, c in rare[:5]) + (", ..." if len(rare) > 5 else "")
    return [f"{len(rare)} {what} than --folds {n_folds} ({shown}); {consequence}"]


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
    if target.is_multilabel:
        notes += _rare_note(target.classes, target.y.sum(axis=0), n_folds, "label(s) have fewer positive rows",
                            "some folds cannot score them")
        folds = iterative_stratification(target.y, n_folds, seed, groups)
        return _checked(folds, n_folds, groups, notes)
    if target.is_classification:
        counts = np.bincount(target.y, minlength=target.n_classes)
        if counts.max() < n_folds:
            raise InputError(
                f"every class has fewer than {n_folds} rows; pass --folds {max(2, int(counts.max()))}"
            )
        notes += _rare_note(target.classes, counts, n_folds, "class(es) have fewer rows",
                            "a fold whose training part lacks a class still has its column, with a probability near 0")
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
    return _checked(folds, n_folds, groups, notes)


def _checked(folds: np.ndarray, n_folds: int, groups: np.ndarray | None, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    empty = [k for k in range(n_folds) if not np.any(folds == k)]
    if empty:
        raise InputError(f"fold(s) {empty} got no rows; pass a smaller --folds")
    if groups is not None:
        check_groups_within_folds(folds, groups)
        notes = notes + group_balance_notes(folds, groups, n_folds)
    return folds, notes


def check_groups_within_folds(folds: np.ndarray, groups: np.ndarray, source: str | None = None) -> None:
    """Raise when any group has rows in two folds: its validation scores would leak.
    `source`: where the folds came from (e.g. "--folds-from runs/a"), named in the message."""
    fold_of_group = {}
    for group, fold in zip(groups.tolist(), folds.tolist()):
        if fold_of_group.setdefault(group, fold) != fold:
            where = f"the folds of {source}" if source else "the fold assignment"
            fix = ("draw new folds (drop --folds-from) or reuse a run made with the same --group-col" if source
                   else "report this as a bug, and drop --group-col meanwhile")
            raise InputError(f"group {group!r} spans folds {fold_of_group[group]} and {fold} in {where}, "
                             f"so its validation scores would leak; {fix}")


def group_balance_notes(folds: np.ndarray, groups: np.ndarray, n_folds: int) -> list[str]:
    """Warnings when groups make folds lopsided: one group dominating a fold, or uneven fold sizes."""
    notes = []
    names, sizes = np.unique(groups.astype(str), return_counts=True)
    largest = int(sizes.argmax())
    fold_share = len(groups) / n_folds
    if sizes[largest] > LARGE_GROUP_SHARE_OF_FOLD * fold_share:
        notes.append(
            f"group '{names[largest]}' holds {int(sizes[largest])} of {len(groups)} rows "
            f"({sizes[largest] / fold_share:.0%} of a fold); its fold's score mostly measures that one group"
        )
    fold_sizes = np.bincount(folds, minlength=n_folds)
    if fold_sizes.max() > FOLD_SIZE_RATIO * fold_sizes.min():
        notes.append(
            f"groups make the folds uneven ({', '.join(map(str, fold_sizes))} rows); "
            "fold scores vary more, compare runs on the all-OOF score"
        )
    return notes


def iterative_stratification(
    Y: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Multilabel folds by iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011):
    repeatedly take the label with the fewest rows still unassigned and deal its rows out to the
    fold that most lacks that label (ties: the fold that lacks most rows, then at random).
    With `groups`, whole groups are dealt out (their summed label counts and sizes), so a group
    never spans two folds. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    Y = np.asarray(Y, dtype=np.int64)
    n_rows = len(Y)
    if groups is None:
        unit_of_row = np.arange(n_rows)
    else:
        _, unit_of_row = np.unique(groups.astype(str), return_inverse=True)
    n_units = int(unit_of_row.max()) + 1
    unit_labels = np.zeros((n_units, Y.shape[1]), dtype=np.int64)
    np.add.at(unit_labels, unit_of_row, Y)
    unit_sizes = np.bincount(unit_of_row, minlength=n_units)

    wanted_rows = np.full(n_folds, n_rows / n_folds)
    wanted_labels = np.tile(Y.sum(axis=0) / n_folds, (n_folds, 1)).astype(np.float64)
    fold_of_unit = np.full(n_units, -1, dtype=np.int64)
    remaining = np.ones(n_units, dtype=bool)
    order = rng.permutation(n_units)  # the order rows of one label are dealt in

    def pick(candidates: np.ndarray) -> int:
        best = candidates[wanted_rows[candidates] == wanted_rows[candidates].max()]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    def assign(unit: int, fold: int) -> None:
        fold_of_unit[unit] = fold
        remaining[unit] = False
        wanted_rows[fold] -= unit_sizes[unit]
        wanted_labels[fold] -= unit_labels[unit]

    while True:
        left = unit_labels[remaining].sum(axis=0)
        present = np.flatnonzero(left > 0)
        if not len(present):
            break
        fewest = present[left[present] == left[present].min()]
        label = int(fewest[0] if len(fewest) == 1 else rng.choice(fewest))
        for unit in order[remaining[order] & (unit_labels[order, label] > 0)]:
            need = wanted_labels[:, label]
            assign(unit, pick(np.flatnonzero(need == need.max())))
    for unit in order[remaining[order]]:  # rows without any label: balance the sizes
        assign(unit, pick(np.arange(n_folds)))
    return fold_of_unit[unit_of_row]


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
    fix = "pass --folds-from with a train-head run directory"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise InputError(f"{path} is not a folds CSV; {fix}") from None
    if list(frame.columns[:2]) != ["id", "fold"]:
        raise InputError(f"{path} does not start with columns id, fold; {fix}")
    folds = pd.to_numeric(frame["fold"], errors="coerce").to_numpy(dtype=np.float64)
    if not len(frame) or not np.isfinite(folds).all() or (folds != np.round(folds)).any() or folds.min() < 0:
        raise InputError(f"{path} has no rows or a fold that is not an integer 0, 1, ...; {fix}")
    if frame["id"].duplicated().any():
        raise InputError(f"{path} lists id '{frame['id'][frame['id'].duplicated()].iloc[0]}' more than once; {fix}")
    folds = folds.astype(np.int64)
    missing = sorted(set(range(int(folds.max()) + 1)) - set(folds.tolist()))
    if missing:
        raise InputError(f"{path} has no rows in fold(s) {missing}; {fix}")
    return frame["id"].to_numpy(dtype=object), folds


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
