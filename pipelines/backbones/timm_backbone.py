"""A timm model ready for embedding: eval mode, its preprocessing, its embedding width.

Embedding, by `layers`:
- None (the default): timm's pooled pre-logits, `forward_head(forward_features(x), pre_logits=True)`:
  the last stage *plus* whatever head the model has before its classifier (EfficientNet's 1x1
  conv_head to 1280 channels, VGG's fully connected layers, ViT's final norm + token pooling).
- stage indices, e.g. (-2, -1) (`extract --layers -2,-1`): the feature maps of those timm
  stages (`model.feature_info`, 0 = the first, -1 = the last), taken through timm's
  `forward_intermediates` (NCHW, no final norm), each global-average-pooled over H x W and
  concatenated in stage order. The width is the sum of the chosen stages' `num_chs`; `-1` alone is
  the last stage's output *before* the head, so it is narrower than the default where the model
  has a head layer (tf_efficientnet_lite0: 320 for `-1` vs 1280 by default; ResNets: the same 2048).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config

from pipelines.backbones.checkpoints import seeded_init
from pipelines.core.errors import ConfigError, WeightsError


@dataclass
class LoadedBackbone:
    name: str  # what the user asked for
    timm_name: str  # the architecture actually built (with pretrained tag when weights came from one)
    model: torch.nn.Module  # eval mode, on CPU; keeps its classifier when the weights had a fitting one
    data_config: dict[str, Any]  # input_size, interpolation, mean, std, crop_pct, crop_mode
    embedding_dim: int  # width of `embed`'s output, measured by a dummy forward
    weights_source: str  # human readable: where the weights came from
    weights_sha256: str | None  # SHA-256 of the weights file; None for random init
    layers: tuple[int, ...] | None = None  # timm stage positions (0-based, sorted) to pool; None: pre-logits

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized float batch (B, C, H, W) -> embedding (B, D) (autograd as the caller has it)."""
        return embed_forward(self.model, images, self.layers)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized float batch (B, C, H, W) -> embedding (B, D), without autograd."""
        with torch.inference_mode():
            return self.features(images)

    def with_layers(self, layers: str | None) -> "LoadedBackbone":
        """This backbone embedding the given stages (`--layers` text, e.g. "-2,-1"); None: unchanged."""
        if layers is None:
            return self
        positions = parse_layers(layers, self.model, self.name)
        self.layers = positions
        self.embedding_dim = measure_embedding_dim(self.model, self.data_config, positions)
        return self


def embed_forward(model: torch.nn.Module, images: torch.Tensor, layers: tuple[int, ...] | None) -> torch.Tensor:
    if layers is None:
        return model.forward_head(model.forward_features(images), pre_logits=True)
    maps = model.forward_intermediates(images, indices=list(layers), intermediates_only=True, output_fmt="NCHW")
    return torch.cat([feature_map.mean(dim=(2, 3)) for feature_map in maps], dim=1)


def stage_channels(model: torch.nn.Module) -> list[int]:
    """Channels of each timm stage (`feature_info`), in order; [] when the model has none."""
    info = getattr(model, "feature_info", None)
    if not info or not hasattr(model, "forward_intermediates"):
        return []
    return [int(stage["num_chs"]) for stage in info]


def parse_layers(text: str, model: torch.nn.Module, name: str) -> tuple[int, ...]:
    """`--layers` text such as "-2,-1" -> sorted 0-based stage positions; ConfigError for bad, out-of-range or repeated stages."""
    channels = stage_channels(model)
    if not channels:
        raise ConfigError(f"--layers: backbone {name!r} has no timm stages (feature_info / forward_intermediates); drop --layers")
    count = len(channels)
    tokens = [token.strip() for token in str(text).split(",")]
    try:
        indices = [int(token) for token in tokens]
    except ValueError:
        raise ConfigError(f"--layers {text!r} is not a comma-separated list of stage indices; use e.g. --layers -2,-1") from None
    if not indices:
        raise ConfigError("--layers is empty; use e.g. --layers -1 or --layers -2,-1")
    positions = []
    for index in indices:
        if not -count <= index < count:
            raise ConfigError(f"--layers {index}: {name} has {count} stages (0..{count - 1} or -{count}..-1)")
        position = index % count
        if position in positions:
            raise ConfigError(f"--layers {text!r} names stage {position} twice; list each stage once")
        positions.append(position)
    return tuple(sorted(positions))


def build_timm_model(timm_name: str) -> torch.nn.Module:
    """The architecture with random weights; pretrained=False so timm never downloads.

    The init is seeded: `--weights random` must give the same model in every process, or a
    resumed smoke run would mix embeddings of two different random networks.
    """
    try:
        with seeded_init():
            return timm.create_model(timm_name, pretrained=False)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise WeightsError(f"timm cannot build {timm_name!r}: {err}") from err


def resolve_data_config(model: torch.nn.Module, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """timm's preprocessing for the model, with per-weights-source overrides applied on top."""
    config = dict(resolve_model_data_config(model))
    config.update(overrides or {})
    # Configs read from a config.json hold lists; tuples keep every data_config comparable.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


def measure_embedding_dim(model: torch.nn.Module, data_config: dict[str, Any],
                          layers: tuple[int, ...] | None = None) -> int:
    """Width of the embedding, from one forward of a blank image of the model's input size."""
    blank = torch.zeros(1, *data_config["input_size"])
    with torch.inference_mode():
        pooled = embed_forward(model, blank, layers)
    if pooled.ndim != 2:
        raise WeightsError(
            f"{type(model).__name__} gives pre-logits of shape {tuple(pooled.shape)}, not (batch, dim): "
            "olymp needs a model with a pooled head"
        )
    return int(pooled.shape[1])
