"""What every audio backbone gives the extract pipeline: a waveform-in, embedding-out module.

The front end (log-mel or other) lives inside `model`, so it runs on the same device as the
network, in float32 (autocast is switched off around it), and moves with `model.to(device)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AudioBackbone:
    name: str  # the name the user asked for (or the default chosen)
    model: torch.nn.Module  # (B, samples) float32 mono waveform at sample_rate -> (B, embedding_dim); eval mode, CPU
    sample_rate: int  # Hz the model expects; inputs are resampled to it
    window_seconds: float  # default analysis window (the model's training clip length), --window
    min_seconds: float  # shortest window the model accepts; shorter clips are zero-padded to it
    embedding_dim: int  # from a dummy forward, never hard-coded
    frontend: dict = field(default_factory=dict)  # front-end parameters (JSON), recorded as preprocessing
    weights_source: str = "random init (meaningless embeddings: tests only)"
    weights_sha256: str | None = None
    architecture: str = ""  # e.g. "panns.Cnn14"; recorded in the manifest

    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(waveforms)


def measure_embedding_dim(model: torch.nn.Module, samples: int) -> int:
    """Width of the embedding, from one forward of `samples` of silence (never hard-coded)."""
    with torch.inference_mode():
        return int(model(torch.zeros(1, samples)).shape[-1])
