"""What every audio backbone gives the extract pipeline: a waveform-in, embedding-out module.

The front end (log-mel or other) lives inside `model`, so it runs on the same device as the
network, in float32 (autocast is switched off around it), and moves with `model.to(device)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
from pipelines.core.errors import WeightsError


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
    architecture: type[nn.Module], weights: str | None, backbone: str, where: str,
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
            f"pass a state dict in the key layout documented in pipelines/backbones/{backbone}.py "
            f"(python -m pydoc pipelines.backbones.{backbone})"
        )
        raise WeightsError(f"{origin} does not fit the {backbone} architecture: {problems.describe()}. Fix: {fix}")
    model.load_state_dict(state, strict=True)
