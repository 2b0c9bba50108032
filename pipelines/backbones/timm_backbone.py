"""A timm model ready for embedding: eval mode, its preprocessing, its embedding width."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config

from pipelines.backbones.checkpoints import seeded_init
from pipelines.errors import WeightsError


@dataclass
class LoadedBackbone:
    name: str  # what the user asked for
    timm_name: str  # the architecture actually built (with pretrained tag when weights came from one)
    model: torch.nn.Module  # eval mode, on CPU; keeps its classifier when the weights had a fitting one
    data_config: dict[str, Any]  # input_size, interpolation, mean, std, crop_pct, crop_mode
    embedding_dim: int  # width of `embed`'s output, measured by a dummy forward
    weights_source: str  # human readable: where the weights came from
    weights_sha256: str | None  # SHA-256 of the weights file; None for random init

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized float batch (B, C, H, W) -> pooled pre-logits (B, D), without autograd."""
        with torch.inference_mode():
            return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


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


def measure_embedding_dim(model: torch.nn.Module, data_config: dict[str, Any]) -> int:
    """Width of the pooled pre-logits, from one forward of a blank image of the model's input size."""
    blank = torch.zeros(1, *data_config["input_size"])
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(blank), pre_logits=True)
    if pooled.ndim != 2:
        raise WeightsError(
            f"{type(model).__name__} gives pre-logits of shape {tuple(pooled.shape)}, not (batch, dim): "
            "olymp needs a model with a pooled head"
        )
    return int(pooled.shape[1])
