"""What every audio backbone gives the extract pipeline: a waveform-in, embedding-out module.

The front end (log-mel or other) lives inside `model`, so it runs on the same device as the
network, in float32 (autocast is switched off around it), and moves with `model.to(device)`.

How a backbone is built (timm's `register_model` + `default_cfgs`, for audio): its catalog
entry becomes an `AudioSpec` (loader key, sample rate, window, width, HF repo, package); each
network module registers one builder per loader key with `@register_network("panns.cnn14")`,
which returns the network with its weights (`Network`); `build_audio_backbone` is the one place
that turns spec + network into an `AudioBackbone`, measuring the width with a dummy forward
and refusing a catalog entry that disagrees with the network it builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from pipelines.backbones.checkpoints import (
    RANDOM_SOURCE,
    RANDOM_WEIGHTS,
    file_sha256,
    is_random,
    key_problems,
    read_state_dict,
    seeded_init,
    strip_wrapper_prefixes,
)
from pipelines.backbones.catalog import BackboneEntry, find_entry
from pipelines.backbones.packaged import WeightsPackage
from pipelines.core.errors import ConfigError, WeightsError


@dataclass
class AudioBackbone:
    name: str  # the name the user asked for (or the default chosen)
    model: torch.nn.Module  # (B, samples) float32 mono waveform at sample_rate -> (B, embedding_dim); eval mode, CPU
    sample_rate: int  # Hz the model expects; inputs are resampled to it
    window_seconds: float  # default analysis window (the model's training clip length), --window
    min_seconds: float  # shortest window the model accepts; shorter clips are zero-padded to it
    embedding_dim: int  # from a dummy forward, never hard-coded
    frontend: dict = field(default_factory=dict)  # front-end parameters (JSON), recorded as preprocessing
    weights_source: str = RANDOM_SOURCE
    weights_sha256: str | None = None
    architecture: str = ""  # e.g. "panns.Cnn14"; recorded in the manifest

    def embed(self, waveforms: torch.Tensor, source_rates=None) -> torch.Tensor:
        """source_rates: each window's file sample rate (None: unknown), for models that use it."""
        with torch.inference_mode():
            if getattr(self.model, "uses_source_rates", False):
                return self.model(waveforms, source_rates)
            return self.model(waveforms)


@dataclass(frozen=True)
class AudioSpec:
    """What the catalog says about an audio backbone: how to build it and what it must give."""

    name: str  # the name the user asked for (kept as typed: recorded in the manifest)
    entry: str  # the catalog entry's name ("" for a timm model outside the catalog, on log-mel images)
    loader: str  # the registered network builder, e.g. "panns.cnn14", "logmel.image"
    sample_rate: int  # Hz the network's front end expects
    window_seconds: float  # default analysis window (--window)
    embedding_dim: int  # width the dummy forward must give (0: not known before building)
    hf_repo: str | None = None  # Hugging Face repo `olymp weights pull` fills and the loader reads
    package: WeightsPackage | None = None  # the pip package shipping the weights, and where
    timm_name: str = ""  # the image backbone, for the log-mel image route

    @classmethod
    def from_entry(cls, entry: BackboneEntry, name: str | None = None) -> AudioSpec:
        return cls(
            name=name or entry.name, entry=entry.name, loader=entry.loader or "logmel.image",
            sample_rate=entry.sample_rate, window_seconds=entry.window_seconds, embedding_dim=entry.embedding_dim,
            hf_repo=entry.pull_repo if not entry.timm_name else None,
            package=WeightsPackage.of(entry) if entry.weights_package else None,
            timm_name=(name or entry.name) if entry.timm_name else "",
        )


def audio_entry(name: str) -> BackboneEntry | None:
    """The catalog's olymp audio backbone that `name` names (case-insensitive, "_" read as "-"
    too: "Cnn14", "panns_ResNet22"), or None."""
    for key in dict.fromkeys((name, name.strip().replace("_", "-"))):
        entry = find_entry(key)
        if entry is not None and entry.audio_model:
            return entry
    return None


class Network(NamedTuple):
    """What a registered builder returns: the network with its weights, and how to describe it."""

    model: nn.Module  # (B, samples) at the spec's sample rate -> (B, D); eval mode, CPU
    architecture: str  # e.g. "panns.Cnn14", recorded in the manifest
    sample_rate: int  # the rate the front end was built for: must equal the catalog's
    min_seconds: float  # shortest window the network accepts
    frontend: dict  # front-end parameters (JSON), recorded as preprocessing
    weights_source: str = RANDOM_SOURCE
    weights_sha256: str | None = None


NetworkBuilder = Callable[[AudioSpec, "str | None"], Network]
NETWORKS: dict[str, NetworkBuilder] = {}  # loader key -> builder, filled by @register_network


def register_network(*keys: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register `builder(spec, weights) -> Network` under each loader key (catalog `loader`)."""

    def register(builder: NetworkBuilder) -> NetworkBuilder:
        for key in keys:
            if key in NETWORKS:
                raise ConfigError(f"audio loader key {key!r} is registered twice")
            NETWORKS[key] = builder
        return builder

    return register


def build_audio_backbone(spec: AudioSpec, weights: str | None) -> AudioBackbone:
    """The one place an AudioBackbone is made: build the network, check it against the catalog."""
    builder = NETWORKS.get(spec.loader)
    if builder is None:
        raise ConfigError(
            f"catalog entry {spec.entry!r} names loader {spec.loader!r}, which no audio network module registers "
            f"(known: {', '.join(sorted(NETWORKS))}): fix `loader` in configs/backbones.toml"
        )
    network = builder(spec, weights)
    if network.sample_rate != spec.sample_rate:
        raise ConfigError(
            f"catalog entry {spec.entry!r} says sample_rate = {spec.sample_rate} but {network.architecture} is "
            f"built for {network.sample_rate} Hz: fix sample_rate in configs/backbones.toml"
        )
    if spec.window_seconds < network.min_seconds:
        raise ConfigError(
            f"catalog entry {spec.entry!r}: window_seconds = {spec.window_seconds:g} is shorter than the "
            f"{network.min_seconds:g} s {network.architecture} needs: fix it in configs/backbones.toml"
        )
    width = measure_embedding_dim(network.model, int(round(network.min_seconds * spec.sample_rate)) or spec.sample_rate)
    if spec.embedding_dim and width != spec.embedding_dim:
        raise ConfigError(
            f"catalog entry {spec.entry!r} says embedding_dim = {spec.embedding_dim} but {network.architecture} "
            f"gives {width}: fix embedding_dim in configs/backbones.toml"
        )
    return AudioBackbone(
        name=spec.name, model=network.model, sample_rate=spec.sample_rate, window_seconds=spec.window_seconds,
        min_seconds=network.min_seconds, embedding_dim=width, frontend=network.frontend,
        weights_source=network.weights_source, weights_sha256=network.weights_sha256,
        architecture=network.architecture,
    )


def measure_embedding_dim(model: torch.nn.Module, samples: int) -> int:
    """Width of the embedding, from one forward of `samples` of silence (never hard-coded)."""
    with torch.inference_mode():
        return int(model(torch.zeros(1, samples)).shape[-1])


# ---- loading weights into the audio networks written in this project (VGGish, YAMNet, CREPE) ----

def init_for_relu(model: nn.Module) -> None:
    """He-normal (fan_in) weights, zero biases: a random network whose activations keep their
    scale through the ReLU stack (PyTorch's default init shrinks YAMNet's to ~1e-11)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_with_weights(
    architecture: Callable[[], nn.Module], weights: str | None, backbone: str, where: str,
    fill_missing: Iterable[str] = (),
) -> tuple[nn.Module, str, str | None]:
    """The model in eval mode with `weights` loaded strictly; (model, weights_source, sha256).

    `fill_missing`: key suffixes a checkpoint may leave out (they keep their initial values).
    """
    if weights is None:
        raise WeightsError(
            f"backbone {backbone!r} has no offline weights: pass --weights PATH to a PyTorch state dict "
            f"(.pth/.pt/.safetensors), e.g. {where}, or use a backbone that needs no download: "
            "--backbone logmel-stats (weight-free) or --backbone efficientnet_lite0 (ships with olymp); "
            f"--weights {RANDOM_WEIGHTS} for smoke tests"
        )
    with seeded_init():
        model = architecture()
    if is_random(weights):
        return model.eval(), RANDOM_SOURCE, None
    path = Path(weights).expanduser()
    load_state_dict_strictly(model, read_state_dict(path), f"weights {path}", backbone, tuple(fill_missing))
    return model.eval(), f"file {path}", file_sha256(path)


def load_state_dict_strictly(model: nn.Module, state: dict[str, torch.Tensor], origin: str, backbone: str,
                             fill_missing: tuple[str, ...] = (), fix: str = "") -> None:
    """Load `state` into `model`, every key and shape matching; WeightsError listing what does not."""
    expected = model.state_dict()
    state = strip_wrapper_prefixes(state, set(expected))
    if fill_missing:  # keys the checkpoint may leave out keep their initial values
        state = {**{k: v for k, v in expected.items() if k.endswith(fill_missing)}, **state}
    problems = key_problems(expected, state)
    if not problems.none:
        fix = fix or (
            f"pass a state dict in the key layout documented in pipelines/backbones/audio/{backbone}.py "
            f"(python -m pydoc pipelines.backbones.audio.{backbone})"
        )
        raise WeightsError(f"{origin} does not fit the {backbone} architecture: {problems.describe()}. Fix: {fix}")
    model.load_state_dict(state, strict=True)
