"""What kind of problem a label column poses: binary, multiclass, regression or multilabel, and why.

`infer_task` looks at the raw label strings (as read from the labels CSV) and returns a
`Target`: the task, a one-line reason a contestant can check, the ordered class list and the
encoded target (class indices 0..K-1, or floats for regression). `multilabel_target` does the
same for several labels per row, given as one delimiter-separated column or as 0/1 columns:
its `y` is an (N, L) 0/1 matrix and `classes` the label names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.core.errors import ConfigError, InputError

TASKS = ("binary", "multiclass", "regression", "multilabel")
CLASSIFICATION = ("binary", "multiclass")

# Integer labels with at most this many distinct values are classes; more are a number to fit.
MAX_INTEGER_CLASSES = 20


@dataclass
class Target:
    task: str  # binary | multiclass | regression | multilabel
    reason: str  # why this task, e.g. "multiclass: 10 distinct string labels"
    classes: list[str] | None  # class (or label) names in the global order; None for regression
    y: np.ndarray  # int64 class indices, float64 values, or an (N, L) int8 0/1 matrix (multilabel)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @property
    def is_classification(self) -> bool:
        return self.task in CLASSIFICATION

    @property
    def is_multilabel(self) -> bool:
        return self.task == "multilabel"


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """float64 values when every label parses as a finite number, else None."""
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if np.isfinite(numbers).all() else None


def _refuse_infinite(values: np.ndarray, numbers: np.ndarray | None, column: str) -> None:
    """A numeric target with "inf" in it would otherwise be read as strings: one class per value."""
    if numbers is not None:
        return
    try:
        parsed = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return
    bad = ~np.isfinite(parsed)
    raise InputError(
        f"'{column}' is numeric but {int(bad.sum())} rows hold {values[bad][0]!r}; "
        "replace them with a number, or empty the cell to leave the row out"
    )


def _classes_of(values: np.ndarray, numbers: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """Sorted class labels and each row's class index. Numeric labels sort by value and keep
    their spelling ("007" stays "007"); one value written two ways ("1", "1.0") is one class,
    named canonically ("1")."""
    if numbers is not None:
        uniques, y = np.unique(numbers, return_inverse=True)
        spellings = [set() for _ in uniques]
        for index, text in zip(y, values):
            spellings[index].add(str(text))
        integral = bool(np.all(uniques == np.round(uniques)))
        names = [
            next(iter(spelled)) if len(spelled) == 1 else (str(int(v)) if integral else repr(float(v)))
            for v, spelled in zip(uniques, spellings)
        ]
        return names, y.astype(np.int64)
    uniques, y = np.unique(values.astype(str), return_inverse=True)
    return [str(v) for v in uniques], y.astype(np.int64)


def infer_task(values: np.ndarray, task: str | None = None, column: str = "label") -> Target:
    """Decide the task from raw label strings, or check and apply an explicit `task`."""
    values = np.asarray(values, dtype=object)
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; pass --task with one of: {', '.join(TASKS)}")
    if task == "multilabel":
        raise ConfigError(
            f"--task multilabel needs several labels per row: pass --label-sep ' ' when '{column}' holds "
            "space-separated labels, or --target-col a,b,c with one 0/1 column per label"
        )
    if len(values) == 0:
        raise InputError(f"no labelled rows left in '{column}'; check the labels file and --id-col")
    numbers = _as_numbers(values)
    _refuse_infinite(values, numbers, column)
    kind = "numeric" if numbers is not None else "string"
    classes, y = _classes_of(values, numbers)
    n_distinct = len(classes)
    if n_distinct < 2:
        raise InputError(
            f"'{column}' has a single value ({values[0]!r}) in every row; "
            "pass --target-col with the column that holds the labels"
        )

    if task is None:
        task, reason = _guess(numbers, classes, kind)
    else:
        reason = f"{task}: set by --task ({n_distinct} distinct {kind} values)"
        if task == "regression" and numbers is None:
            example = next(v for v in values if _as_numbers(np.array([v])) is None)
            raise ConfigError(
                f"--task regression needs a numeric target; '{column}' holds values like "
                f"{example!r}; drop --task to classify them"
            )
        if task == "binary" and n_distinct != 2:
            raise ConfigError(
                f"--task binary needs exactly 2 classes; '{column}' has {n_distinct}; "
                "pass --task multiclass"
            )

    if task == "regression":
        return Target(task, reason, None, numbers.astype(np.float64))
    return Target(task, reason, classes, y)


def _guess(numbers: np.ndarray | None, classes: list[str], kind: str) -> tuple[str, str]:
    n_distinct = len(classes)
    if n_distinct == 2:
        return "binary", f"binary: 2 distinct {kind} labels ({classes[0]}, {classes[1]})"
    if numbers is None:
        return "multiclass", f"multiclass: {n_distinct} distinct string labels"
    if not np.all(numbers == np.round(numbers)):
        return "regression", (
            f"regression: non-integer numeric target ({n_distinct} distinct values)"
        )
    if n_distinct <= MAX_INTEGER_CLASSES:
        return "multiclass", (
            f"multiclass: {n_distinct} distinct integer labels "
            f"(≤ {MAX_INTEGER_CLASSES}; pass --task regression to fit them as numbers)"
        )
    return "regression", (
        f"regression: numeric target with {n_distinct} distinct values "
        f"(> {MAX_INTEGER_CLASSES}; pass --task multiclass to treat them as classes)"
    )


def multilabel_target(values: np.ndarray, columns: list[str], label_sep: str | None) -> Target:
    """A multilabel target from one delimiter-separated column (`label_sep` given, `values` (N,))
    or from 0/1 columns (`values` (N, L), one per name in `columns`)."""
    values = np.asarray(values, dtype=object)
    if len(values) == 0:
        raise InputError(f"no labelled rows left in '{', '.join(columns)}'; check the labels file and --id-col")
    if label_sep is not None:
        if len(columns) != 1:
            raise ConfigError("--label-sep splits one column; pass a single --target-col with it")
        if label_sep == "":
            raise ConfigError("--label-sep is empty; pass the delimiter, e.g. --label-sep ' '")
        rows = [[t.strip() for t in str(v).split(label_sep) if t.strip()] for v in values]
        classes = sorted(set().union(*rows))
        index = {name: k for k, name in enumerate(classes)}
        y = np.zeros((len(rows), len(classes)), dtype=np.int8)
        for i, row in enumerate(rows):
            y[i, [index[name] for name in row]] = 1
        source = f"'{columns[0]}' split on {label_sep!r}"
    else:
        classes = list(columns)
        y = np.zeros(values.shape, dtype=np.int8)
        for j, name in enumerate(columns):
            numbers = _as_numbers(values[:, j])
            if numbers is None or not np.isin(numbers, (0.0, 1.0)).all():
                bad = next(v for v in values[:, j] if _as_numbers(np.array([v])) is None or float(v) not in (0.0, 1.0))
                raise InputError(
                    f"multilabel column '{name}' holds {bad!r}; one 0/1 column per label is expected "
                    "(for one column of delimiter-separated labels pass a single --target-col and --label-sep ' ')"
                )
            y[:, j] = numbers.astype(np.int8)
        source = f"{len(columns)} 0/1 columns"
    if len(classes) < 2:
        raise InputError(
            f"{source} name{'s' if len(classes) != 1 else ''} {len(classes)} label(s); multilabel needs 2 or more "
            "(for one yes/no target drop --label-sep and train a binary task)"
        )
    constant = [name for name, col in zip(classes, y.T) if col.min() == col.max()]
    if constant and label_sep is None:
        raise InputError(
            f"multilabel column(s) {', '.join(constant)} hold the same value in every row; drop them from --target-col"
        )
    reason = (
        f"multilabel: {len(classes)} labels from {source} "
        f"({y.sum(axis=1).mean():.2f} labels per row, {int((y.sum(axis=1) == 0).sum())} rows without any)"
    )
    return Target("multilabel", reason, classes, y)


def prior(target: Target) -> list[float] | float:
    """What to predict for a row without embeddings: class frequencies (per-label positive rates
    for multilabel), or the mean target."""
    if target.is_multilabel:
        return target.y.mean(axis=0).tolist()
    if target.is_classification:
        counts = np.bincount(target.y, minlength=target.n_classes)
        return (counts / counts.sum()).tolist()
    return float(np.mean(target.y))
