"""One typed config loader: a dict (a TOML table, `--set` overrides, CLI values) checked against a
dataclass's typed fields. Unknown keys are refused with the nearest known name; values are
checked against the field's type hint, element types included (`list[int]` refuses `["a"]`).

Used by the `olymp run` config (pipelines.chain.runconfig), ExtractConfig (every field, on
construction) and the backbone catalog.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing

from pipelines.core.errors import ConfigError


def field_types(cls) -> dict[str, object]:
    """Field name -> resolved type hint of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def required_fields(cls) -> list[str]:
    """Fields without a default."""
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def accepts(hint, value, paths: bool = False) -> bool:
    """Whether `value` fits the type hint (TOML values: arrays are lists); `paths`: a `str` field
    also takes an os.PathLike (a path built in code)."""
    if hint is typing.Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(arg, value, paths) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is str and paths and isinstance(value, os.PathLike):
        return True
    if origin in (list, tuple, set, frozenset):  # element types too: list[int] refuses ["a"]
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple) if paths else list):  # TOML arrays are lists
            return False
        return not args or args[0] is Ellipsis or all(accepts(args[0], item, paths) for item in value)
    if origin is dict:
        args = typing.get_args(hint)
        return isinstance(value, dict) and (
            not args or all(accepts(args[0], k, paths) and accepts(args[1], v, paths) for k, v in value.items())
        )
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def nearest(key: str, known) -> str | None:
    """The known name closest to a misspelt `key`, if any is close."""
    found = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: str, known, where: str, prefix: str = "") -> ConfigError:
    near = nearest(key, known)
    hint = f"did you mean '{prefix}{near}'? " if near else ""
    return ConfigError(f"unknown key '{prefix}{key}' in {where}; {hint}allowed keys: {', '.join(sorted(known))}")


def check_fields(cls, values: dict, where: str, prefix: str = "", keys: dict | None = None) -> dict:
    """`values` checked against dataclass `cls` (or `keys`: config key -> type hint, for tables
    whose keys are renamed or a subset of the fields): each key known (else the nearest name is
    suggested), each value of its field's type; a key without a default must be present.
    `prefix` spells keys in messages ("head." -> 'head.folds'). Returns `values`."""
    known = keys if keys is not None else field_types(cls)
    for key, value in values.items():
        if key not in known:
            raise unknown_key(key, known, where, prefix)
        if not accepts(known[key], value):
            raise ConfigError(f"'{prefix}{key}' in {where} is {value!r}, expected {type_name(known[key])}; fix the value")
    missing = [key for key in required_fields(cls) if key in known and key not in values]
    if missing:
        table = f" under [{prefix.rstrip('.')}]" if prefix else ""
        raise ConfigError(f"{where} has no '{prefix}{missing[0]}'; add it{table}")
    return values


def check_instance(obj, what: str, option=lambda name: "--" + name.replace("_", "-")) -> None:
    """Every field of a dataclass instance of its declared type (paths may be os.PathLike);
    the message names the setting and its CLI option."""
    for name, hint in field_types(type(obj)).items():
        value = getattr(obj, name)
        if not accepts(hint, value, paths=True):
            raise ConfigError(f"{what}.{name} = {value!r} (option {option(name)}) is invalid: "
                              f"expected {type_name(hint)}")


def in_range(value, bounds) -> bool:
    """A finite number within (low, high, inclusive) bounds (either may be None: unbounded)."""
    low, high, inclusive = bounds
    if not math.isfinite(value):
        return False
    if low is not None and (value < low or (not inclusive and value == low)):
        return False
    return high is None or (value < high or (inclusive and value == high))
