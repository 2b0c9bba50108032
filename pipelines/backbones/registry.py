"""`load_backbone`: name + weights choice -> a ready LoadedBackbone, never touching the network.

Weights, by `weights`:
- a path: that file (.safetensors, or .pt/.pth/.bin read with weights_only);
- "random": random init, for tests and smoke runs;
- None (offline auto): the catalog entry's pip-packaged weights, else the local Hugging Face
  cache; nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.backbones.checkpoints import (
    RANDOM_SOURCE,
    RANDOM_WEIGHTS,
    FitResult,
    file_sha256,
    fit_state_dict,
    is_random,
    read_state_dict,
)
from pipelines.backbones.hf_cache import cached_weights, hf_hub_cache_dir
from pipelines.backbones.names import ResolvedName, resolve_name
from pipelines.backbones.catalog import catalog_defaults
from pipelines.backbones.packaged import WeightsPackage, match_by_position, packaged_weights_path
from pipelines.backbones.timm_backbone import (
    LoadedBackbone,
    build_timm_model,
    measure_embedding_dim,
    resolve_data_config,
)
from pipelines.core.errors import WeightsError


@dataclass(frozen=True)
class WeightsChoice:
    timm_name: str  # what to build for these weights
    path: Path | None  # None: random init
    description: str  # weights_source without the resolution trail
    from_package: bool = False  # shipped in a pip package: the catalog's package_preprocess applies
    match_by_position: bool = False  # file keys differ from timm's: match tensors by order


def load_backbone(name: str, weights: str | None = None) -> LoadedBackbone:
    resolved = resolve_name(name)
    choice = _choose_weights(resolved, weights)
    model = build_timm_model(choice.timm_name)
    description = choice.description
    if choice.path is not None and _load_weights(model, choice).classifier_dropped:
        description += " (its classifier does not fit this architecture: dropped, embeddings unaffected)"
    model.eval()
    data_config = resolve_data_config(model, _preprocess_overrides(resolved, choice))
    return LoadedBackbone(
        name=resolved.requested,
        timm_name=_built_name(model, choice.timm_name),
        model=model,
        data_config=data_config,
        embedding_dim=measure_embedding_dim(model, data_config),
        weights_source=f"{description} [{resolved.via}]" if resolved.via else description,
        weights_sha256=file_sha256(choice.path) if choice.path is not None else None,
    )


def _choose_weights(resolved: ResolvedName, weights: str | None) -> WeightsChoice:
    if weights is None:
        return _offline_weights(resolved)
    if is_random(weights):
        return WeightsChoice(resolved.timm_name, None, RANDOM_SOURCE)
    path = Path(weights).expanduser()
    return WeightsChoice(resolved.timm_name, path, f"file {path}")


def _offline_weights(resolved: ResolvedName) -> WeightsChoice:
    """The catalog's packaged weights, else the local HF cache; WeightsError naming the fixes."""
    package_problem = ""
    entry = resolved.entry
    if entry is not None and entry.weights_package:
        try:
            package = WeightsPackage.of(entry)
            path = packaged_weights_path(package)
            description = f"package {package.distribution} ({path})"
            return WeightsChoice(entry.timm_name, path, description, True, package.matched_by_position)
        except WeightsError as err:
            package_problem = f"{err}; "  # still worth trying the HF cache
    for repo in resolved.hub_repos:
        path = cached_weights(repo.repo_id, repo.filename)
        if path is not None:
            return WeightsChoice(repo.timm_name, path, f"hf-cache {repo.repo_id} ({path})")
    raise WeightsError(_no_offline_weights_message(resolved, package_problem))


def _load_weights(model: torch.nn.Module, choice: WeightsChoice) -> FitResult:
    assert choice.path is not None
    state = read_state_dict(choice.path)
    if choice.match_by_position:
        state = match_by_position(state, model.state_dict(), str(choice.path))
    return fit_state_dict(model, state, f"weights {choice.path}")


def _preprocess_overrides(resolved: ResolvedName, choice: WeightsChoice) -> dict[str, Any]:
    """Only the packaged weights carry catalog-verified preprocessing; others keep timm's."""
    entry = resolved.entry
    if choice.from_package and entry is not None and entry.package_preprocess is not None:
        return entry.package_preprocess.as_overrides()
    return {}


def _built_name(model: torch.nn.Module, requested_timm_name: str) -> str:
    # local-dir: models are named by the architecture their config.json declares.
    if requested_timm_name.startswith("local-dir:"):
        return str(model.pretrained_cfg.get("architecture", requested_timm_name))
    return requested_timm_name


def pull_command(name: str, repos: list[str]) -> str:
    """The one command that fills the cache for `name`: olymp's own where `olymp weights pull`
    fetches one of the repos looked for (a catalog entry), else the hub's."""
    from pipelines.backbones.catalog import find_entry

    entry = find_entry(name) or find_entry(repos[0])
    if entry is not None and entry.pull_repo in repos:
        return f"olymp weights pull {entry.name}"
    return f"hf download {repos[0]} (olymp weights pull fetches catalog entries only)"


def _no_offline_weights_message(resolved: ResolvedName, package_problem: str) -> str:
    repos = [repo.repo_id for repo in resolved.hub_repos]
    if repos:
        looked = f"not in the Hugging Face cache {hf_hub_cache_dir()} (looked for {', '.join(repos)})"
        download = f"pre-download while online: {pull_command(resolved.requested, repos)}, "
    else:
        looked, download = "timm has no pretrained weights for it", ""
    return (
        f"no offline weights for backbone {resolved.requested!r}: {package_problem}{looked}. "
        f"Fix: --weights PATH to a .safetensors/.pt file, or {download}"
        f"or --backbone {catalog_defaults().image} (ships with olymp), or --weights {RANDOM_WEIGHTS} for smoke tests"
    )
