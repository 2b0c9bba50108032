"""Finding weights in the local Hugging Face cache, never over the network.

huggingface_hub reads its cache location from the environment once, at import; olymp
reads it at call time instead, so a changed HF_HOME / HF_HUB_CACHE (tests, notebooks that
set it late) is honoured, and passes it explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

# What timm repos on the Hub hold, best first: safetensors needs no unpickling.
WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def hf_hub_cache_dir() -> Path:
    """The hub cache folder, resolved from the environment as huggingface_hub does."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return _expand(explicit)
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        hf_home = os.path.join(xdg_cache, "huggingface")
    return _expand(hf_home) / "hub"


def cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached copy of `filename` in model repo `repo_id` (revision main), or None."""
    found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_hub_cache_dir())
    # Besides a path or None it may return a "known not to exist" marker: treat as absent.
    return Path(found) if isinstance(found, str) else None


def cached_weights(repo_id: str, preferred_filename: str | None = None) -> Path | None:
    """The cached weights file of `repo_id`, trying the repo's own filename first."""
    names = ([preferred_filename] if preferred_filename else []) + list(WEIGHT_FILENAMES)
    for filename in dict.fromkeys(names):  # ordered, without duplicates
        path = cached_file(repo_id, filename)
        if path is not None:
            return path
    return None


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))
