"""Heads: models fitted on embeddings, one module each, found by name.

Modules are imported on first use so that `olymp --help` does not pay for LightGBM/sklearn.
"""

from __future__ import annotations

import importlib
import json

from pipelines.core.errors import ConfigError
from pipelines.heads.base import Head

# name -> "module:Class"
HEADS = {
    "lgbm": "pipelines.heads.lgbm:LGBMHead",
    "logreg": "pipelines.heads.logreg:LogRegHead",
    "mlp": "pipelines.heads.mlp:MLPHead",
}


def get_head(name: str) -> type[Head]:
    if name not in HEADS:
        raise ConfigError(f"unknown head '{name}'; pass --head with one of: {', '.join(HEADS)}, auto")
    module, cls = HEADS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_params(items: list[str] | None) -> dict:
    """`["num_leaves=63", "C=0.1"]` -> {"num_leaves": 63, "C": 0.1}; values parse as JSON when
    they can (numbers, true/false, null), else stay strings."""
    params = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param '{item}' is not KEY=VALUE; e.g. --param num_leaves=63")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


__all__ = ["HEADS", "Head", "get_head", "parse_params"]
