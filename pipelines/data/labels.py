"""The labels CSV: read as strings and checked (columns, unique ids, missing targets), and turned
into the task's Target (train-head, and blend reading a run's truth again)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import ConfigError, InputError, first_line
from pipelines.data.tasks import Target, infer_task, multilabel_target


def _column_fix(option: str, columns: list[str], avoid: set) -> str:
    candidates = [c for c in columns if c not in avoid]
    if len(candidates) == 1:
        return f"pass {option} {candidates[0]}"
    if not candidates and option == "--group-col":
        return "drop --group-col"
    return f"pass {option} with one of them"


def target_columns(target_col: str) -> list[str]:
    """--target-col as a list: "label" -> ["label"], "a,b,c" -> ["a", "b", "c"] (multilabel 0/1 columns)."""
    return [name.strip() for name in target_col.split(",") if name.strip()]


# Target values that mean "missing" to pandas, R and spreadsheets: read as no target (the row is
# left out, with a warning naming the value), never as a class of their own.
MISSING_TARGETS = frozenset({"NaN", "nan", "NAN", "-NaN", "-nan", "NA", "N/A", "n/a", "#N/A", "<NA>", "NULL", "null"})


def missing_target_note(path: Path, counts: dict[str, int], n_rows: int, target_col: str) -> str:
    shown = ", ".join(f"'{value}' ({n})" for value, n in sorted(counts.items()))
    return (
        f"{n_rows} rows of {path.name} have {shown} in '{target_col}': read as missing, "
        "so they are left out; if it is a class, rename it in the CSV (e.g. to 'none')"
    )


def read_labels(
    path: str | Path, id_col: str, target_col: str, group_col: str | None = None, keep_empty: bool = False
) -> pd.DataFrame:
    """The labels CSV as strings ("007" stays "007"), checked: columns present, ids unique,
    rows without a target (in any target column) left out (counted in `attrs["dropped"]`);
    "NaN", "NA"... targets count as missing (`attrs["missing_values"]`: value -> rows).
    `keep_empty` (multilabel --label-sep): an empty target is a row with no labels, kept as ""."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise InputError(f"{path.name} is empty; pass --labels with a CSV file: a header line (id,label) and one row per id") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path.name} as CSV ({first_line(error)}); pass --labels with a CSV file") from None
    columns = [str(c) for c in frame.columns]
    listing = ", ".join(columns)
    if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
        listing += "; the file looks separated by ';', tab or '|', save it comma-separated"
    targets = target_columns(target_col)
    for col, option, avoid in (
        (id_col, "--id-col", set(targets)),
        *((name, "--target-col", {id_col, group_col, *targets}) for name in targets),
        (group_col, "--group-col", {id_col, *targets}),
    ):
        if col is not None and col not in columns:
            fix = _column_fix(option, columns, avoid)
            raise InputError(f"{path.name} has no column '{col}' (columns: {listing}); {fix}")
    if frame[id_col].isna().any():
        raise InputError(f"{path.name} has {int(frame[id_col].isna().sum())} rows with an empty '{id_col}'; fill or drop them")
    duplicated = frame[id_col].duplicated()
    if duplicated.any():
        example = frame[id_col][duplicated].iloc[0]
        raise InputError(
            f"{path.name} has {int(duplicated.sum())} duplicate ids in '{id_col}' (e.g. '{example}'); keep one row per id"
        )
    if frame.empty:
        raise InputError(f"{path.name} has a header but no rows; pass --labels with the CSV that holds the labels")
    if keep_empty:
        frame[targets] = frame[targets].fillna("")
    stripped = frame[targets].apply(lambda column: column.str.strip())
    missing_like = stripped.isin(MISSING_TARGETS)
    found, counts = np.unique(stripped.to_numpy(dtype=object)[missing_like.to_numpy()].astype(str), return_counts=True)
    missing_values = {str(value): int(n) for value, n in zip(found, counts)}
    missing = frame[targets].isna().any(axis=1) | missing_like.any(axis=1)
    if group_col is not None:
        if frame[group_col].isna().any():
            raise InputError(f"{path.name} has rows with an empty '{group_col}'; give every row a group")
    if missing.all():
        raise InputError(f"no row of {path.name} has a value in '{target_col}'; pass --target-col with the column that holds the labels")
    kept = frame.loc[~missing].reset_index(drop=True)
    kept.attrs["dropped"] = int(missing.sum())
    kept.attrs["missing_values"] = missing_values
    kept.attrs["missing_rows"] = int(missing_like.any(axis=1).sum())
    return kept


def target_from_labels(
    labels: pd.DataFrame, rows: np.ndarray, target_col: str, label_sep: str | None, task: str | None
) -> Target:
    """The task: multilabel with --label-sep or several target columns, else inferred from one
    (train-head, and blend reading a run's truth again)."""
    columns = target_columns(target_col)
    if label_sep is None and len(columns) == 1:
        return infer_task(labels[columns[0]].to_numpy(dtype=object)[rows], task, columns[0])
    if task not in (None, "multilabel"):
        how = f"--label-sep {label_sep!r}" if label_sep is not None else f"{len(columns)} target columns"
        raise ConfigError(f"{how} make a multilabel task, not {task}; drop --task or pass --task multilabel")
    raw = labels[columns].to_numpy(dtype=object)[rows]
    return multilabel_target(raw[:, 0] if label_sep is not None else raw, columns, label_sep)


def check_label_source(labels, labels_from_folders: bool, group_col: str | None) -> None:
    """Exactly one source of classes: a labels CSV, or the files' class folders (no groups then)."""
    if labels_from_folders and labels is not None:
        raise ConfigError("--labels-from-folders reads the classes from the folder names; drop --labels (or drop --labels-from-folders)")
    if labels_from_folders and group_col is not None:
        raise ConfigError("--group-col needs a labels CSV; drop it with --labels-from-folders, or pass --labels")
    if labels is None and not labels_from_folders:
        raise ConfigError("no labels given; pass --labels labels.csv, or --labels-from-folders when files sit in class folders")


def read_labels_noted(path: Path, id_col: str, target_col: str, group_col: str | None,
                      keep_empty: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """`read_labels` plus the notes a user must see: rows read as missing, rows left out."""
    labels = read_labels(path, id_col, target_col, group_col, keep_empty=keep_empty)
    notes = []
    missing_rows = labels.attrs.get("missing_rows", 0)
    if missing_rows:
        notes.append(missing_target_note(path, labels.attrs["missing_values"], missing_rows, target_col))
    empty = labels.attrs["dropped"] - missing_rows
    if empty > 0:
        notes.append(f"{empty} rows of {path.name} have no '{target_col}'; they are left out")
    return labels, notes
