"""Crash-safe file output: every file olymp writes appears whole or not at all.

A write goes to `.NAME.tmp` beside the target, is flushed to disk, then renamed over the target
(`os.replace` is atomic on one filesystem). A kill -9 or a full disk leaves at most the temp
file, which olymp recognises as its own leftover; the previous target stays intact.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.core.errors import InputError

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """The temp name a write of `path` goes through (olymp's own leftover if found later)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp_path), flush it to disk, then rename onto path: readers never see half a file.

    On any failure (a full disk included) the temp file is removed and the old target is kept.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def json_ready(value):
    """NaN/inf -> None, numpy scalars and arrays -> Python, tuples -> lists, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, data) -> None:
    """Strict JSON (json_ready), indented, written atomically."""
    write_text_atomic(path, json.dumps(json_ready(data), indent=2) + "\n")


def check_output_dir(path: str | Path, fix: str) -> Path:
    """Refuse, touching nothing, an output path that is a file (`fix` says what to pass instead)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; {fix}")
    return path


def prepare_output_dir(path: str | Path, fix: str) -> Path:
    """The output directory, created (with its parents) after check_output_dir. What a command may
    replace inside it is the command's own decision (extract, train-head, blend, predict, run)."""
    path = check_output_dir(path, fix)
    path.mkdir(parents=True, exist_ok=True)
    return path
