"""From what the user typed (`--backbone`) to a timm architecture and where its weights may be.

Accepted, in this order: a catalog name or a Hugging Face id listed in the catalog
(`efficientnet_lite0`, `microsoft/resnet-50`); `hf-hub:<repo>` or `<owner>/<repo>` of a
timm-format repository; a timm model name, with or without pretrained tag (`resnet50.a1_in1k`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import timm
from timm.models import PretrainedCfg, get_pretrained_cfg, split_model_name_tag

from pipelines.backbones.hf_cache import cached_file
from pipelines.backbones.catalog import BackboneEntry, find_entry, load_catalog
from pipelines.core.errors import WeightsError

HF_HUB_PREFIX = "hf-hub:"
TIMM_HUB_OWNER = "timm/"
LOCAL_DIR_PREFIX = "local-dir:"  # timm reads config.json from such a folder, without network


@dataclass(frozen=True)
class HubRepo:
    repo_id: str  # e.g. "timm/resnet50.a1_in1k"
    timm_name: str  # what to build for these weights: architecture.tag, or local-dir:<snapshot>
    filename: str | None = None  # the repo's own weights filename when timm's cfg names one


@dataclass(frozen=True)
class ResolvedName:
    requested: str  # as typed
    timm_name: str  # built when weights come from a file or are random
    entry: BackboneEntry | None  # the catalog entry, when the name is in the catalog
    hub_repos: tuple[HubRepo, ...]  # where the local HF cache may hold weights, best first
    via: str  # how the name was resolved, for messages; "" when it is a plain timm name


def resolve_name(name: str) -> ResolvedName:
    requested = name.strip()
    if not requested:
        raise WeightsError("empty backbone name: pass --backbone efficientnet_lite0 or any timm model name")
    repo_id = requested.removeprefix(HF_HUB_PREFIX) if requested.startswith(HF_HUB_PREFIX) else None
    key = repo_id or requested
    entry = find_entry(key)
    if entry is not None and entry.timm_name:  # audio-only and non-extractable entries are not timm models
        return _from_catalog(requested, key, entry)
    if repo_id is not None or "/" in requested:
        return _from_hub_repo(requested, key)
    if _is_timm_name(requested):
        return ResolvedName(requested, requested, None, tuple(_default_hub_repos(requested)), via="")
    raise WeightsError(_unknown_name_message(requested))


def _from_catalog(requested: str, key: str, entry: BackboneEntry) -> ResolvedName:
    matched_hf_id = next((hf_id for hf_id in entry.hf_ids if hf_id.casefold() == key.casefold()), None)
    origin = dict(entry.hf_origins).get(matched_hf_id) if matched_hf_id else None
    if origin is not None:
        # A contestant's HF id (google/..., facebook/...) means those weights: build the timm
        # checkpoint converted from the same originals, not the entry's default tag.
        repo = _timm_repo(f"{TIMM_HUB_OWNER}{origin}")
        via = f"{requested} is catalog entry {entry.name}: the same weights as timm {origin}"
        return ResolvedName(requested, origin, entry, (repo,) if repo else (), via)
    timm_repo = _timm_repo(matched_hf_id) if matched_hf_id else None
    if timm_repo is not None:
        # A tagged timm repo asks for exactly those weights (and their preprocessing).
        via = f"{requested} is catalog entry {entry.name}, timm {timm_repo.timm_name}"
        return ResolvedName(requested, timm_repo.timm_name, entry, (timm_repo,), via)
    repos = _default_hub_repos(entry.timm_name) + [repo for repo in map(_timm_repo, entry.hf_ids) if repo is not None]
    unique: dict[str, HubRepo] = {}
    for repo in repos:
        unique.setdefault(repo.repo_id, repo)  # the first mention of a repo wins
    by_name = key.casefold() == entry.name.casefold()
    if by_name and entry.name == entry.timm_name:
        via = ""
    elif by_name:
        via = f"catalog entry {entry.name} is timm {entry.timm_name}"
    else:
        via = f"{requested} is catalog entry {entry.name}, timm {entry.timm_name}"
    return ResolvedName(requested, entry.timm_name, entry, tuple(unique.values()), via)


def _from_hub_repo(requested: str, repo_id: str) -> ResolvedName:
    timm_repo = _timm_repo(repo_id)
    if timm_repo is not None:
        via = f"{repo_id} is timm {timm_repo.timm_name}"
        return ResolvedName(requested, timm_repo.timm_name, None, (timm_repo,), via)
    # Any timm-format repo (e.g. a contestant's fine-tune) that is already in the cache.
    config = cached_file(repo_id, "config.json")
    if config is not None:
        architecture = _architecture_in_config(config)
        if architecture and timm.is_model(architecture):
            local = HubRepo(repo_id, f"{LOCAL_DIR_PREFIX}{config.parent}")
            return ResolvedName(requested, local.timm_name, None, (local,), f"{repo_id} is timm {architecture}")
    raise WeightsError(
        f"{repo_id!r} is not in olymp's backbone catalog and not a timm model repository in the local "
        f"Hugging Face cache: use a catalog or timm name (e.g. --backbone efficientnet_lite0, resnet50), "
        f"or a timm repo such as hf-hub:timm/resnet50.a1_in1k pre-downloaded while online (hf download <repo>)"
    )


def _timm_repo(repo_id: str) -> HubRepo | None:
    """The repo as a timm model, when it is `timm/<timm name>`."""
    if not repo_id.startswith(TIMM_HUB_OWNER):
        return None
    timm_name = repo_id.removeprefix(TIMM_HUB_OWNER)
    if not _is_timm_name(timm_name):
        return None
    cfg = _pretrained_cfg(timm_name)
    return HubRepo(repo_id, timm_name, cfg.hf_hub_filename if cfg else None)


def _default_hub_repos(timm_name: str) -> list[HubRepo]:
    """The HF repo timm itself would download `timm_name` from (its default or given tag)."""
    cfg = _pretrained_cfg(timm_name)
    if cfg is None or not cfg.hf_hub_id:
        return []
    architecture, _ = split_model_name_tag(timm_name)
    tagged = f"{architecture}.{cfg.tag}" if cfg.tag else architecture
    return [HubRepo(cfg.hf_hub_id, tagged, cfg.hf_hub_filename)]


def _is_timm_name(name: str) -> bool:
    architecture, tag = split_model_name_tag(name)
    return timm.is_model(architecture) and (not tag or _pretrained_cfg(name) is not None)


def _pretrained_cfg(timm_name: str) -> PretrainedCfg | None:
    try:
        return get_pretrained_cfg(timm_name)
    except RuntimeError:  # unknown pretrained tag
        return None


def _architecture_in_config(config_path: Path) -> str | None:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    architecture = config.get("architecture") if isinstance(config, dict) else None
    return architecture if isinstance(architecture, str) else None


def _unknown_name_message(name: str) -> str:
    architecture, tag = split_model_name_tag(name)
    if tag and timm.is_model(architecture):
        tags = [known.split(".", 1)[1] for known in timm.list_pretrained(f"{architecture}.*")]
        return (
            f"timm model {architecture} has no pretrained tag {tag!r}; known tags: "
            f"{', '.join(tags[:8]) or 'none'}. Pass --backbone {architecture}.<tag>"
        )
    catalog_names = [entry.name for entry in load_catalog() if entry.timm_name]
    candidates = list(dict.fromkeys(catalog_names + timm.list_models()))
    close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown backbone {name!r}: {hint}Pass a catalog name ({', '.join(catalog_names)}), "
        "a timm model name (python -c \"import timm; print(timm.list_models('*vit*'))\"), or hf-hub:timm/<model>"
    )
