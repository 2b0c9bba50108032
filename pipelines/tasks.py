"""What kind of problem a label column poses: binary, multiclass or regression, and why.

`infer_task` looks at the raw label strings (as read from the labels CSV) and returns a
`Target`: the task, a one-line reason a contestant can check, the ordered class list and the
encoded target (class indices 0..K-1, or floats for regression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.errors import ConfigError, InputError

TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION = ("binary", "multiclass")

# Integer labels with at most this many distinct values are classes; more are a number to fit.
MAX_INTEGER_CLASSES = 20


@dataclass
class Target:
    task: str  # binary | multiclass | regression
    reason: str  # why this task, e.g. "multiclass: 10 distinct string labels"
    classes: list[str] | None  # class labels in the global (sorted) order; None for regression
    y: np.ndarray  # int64 class indices (classification) or float64 values (regression)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    @property
    def is_classification(self) -> bool:
        return self.task in CLASSIFICATION


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """float64 values when every label parses as a finite number, else None."""
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if np.isfinite(numbers).all() else None


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
    if len(values) == 0:
        raise InputError(f"no labelled rows left in '{column}'; check the labels file and --id-col")
    numbers = _as_numbers(values)
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


def prior(target: Target) -> list[float] | float:
    """What to predict for a row without embeddings: class frequencies, or the mean target."""
    if target.is_classification:
        counts = np.bincount(target.y, minlength=target.n_classes)
        return (counts / counts.sum()).tolist()
    return float(np.mean(target.y))
