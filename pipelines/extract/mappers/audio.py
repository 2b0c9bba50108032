"""Audio mapper stage: window batches → window embeddings on the device → pooled per clip.

The backbone's front end (log-mel with torchaudio) runs inside its module on the same device,
in float32; the network runs under autocast where the hardware has bf16/fp16 (as for images).
`ClipPooler` gathers a clip's window embeddings, which may span several batches, and releases
the clip's row when its last window has been embedded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.core.errors import ConfigError
from pipelines.core.device import autocast_for, resolve_precision
from pipelines.extract.config import POOLINGS



class AudioMapper:
    def __init__(self, backbone, device: torch.device, precision: str = "auto"):
        self.backbone = backbone
        self.device = device
        self.precision = resolve_precision(precision, device)
        backbone.model.to(device).eval()  # in place: embed() runs it on the device

    @torch.inference_mode()
    def __call__(self, waveforms: torch.Tensor, source_rates=None) -> np.ndarray:
        batch = waveforms.to(self.device, non_blocking=True).float()
        with autocast_for(self.device, self.precision):
            embeddings = self.backbone.embed(batch, source_rates)
        return embeddings.float().cpu().numpy()


@dataclass
class _Partial:
    total: np.ndarray
    maximum: np.ndarray
    count: int = 0


@dataclass
class ClipPooler:
    """Window embeddings in, one pooled row per finished clip out."""

    pool: str  # mean | max | meanmax
    partial: dict = field(default_factory=dict)  # clip id -> running sum / max / count

    def __post_init__(self):
        if self.pool not in POOLINGS:
            raise ConfigError(f"unknown --pool {self.pool!r}; use one of {', '.join(POOLINGS)}")

    def output_dim(self, window_dim: int) -> int:
        return 2 * window_dim if self.pool == "meanmax" else window_dim

    def add(self, ids: list[str], vectors: np.ndarray, last: list[bool]) -> tuple[list[str], np.ndarray, list[int]]:
        """Accumulate; return the clips finished by this batch (ids, pooled vectors, window counts)."""
        done_ids, done_vectors, done_counts = [], [], []
        for clip_id, vector, is_last in zip(ids, vectors, last):
            state = self.partial.get(clip_id)
            if state is None:
                state = self.partial[clip_id] = _Partial(np.zeros_like(vector, dtype=np.float64), vector.copy())
            state.total += vector
            np.maximum(state.maximum, vector, out=state.maximum)
            state.count += 1
            if is_last:
                del self.partial[clip_id]
                done_ids.append(clip_id)
                done_vectors.append(self._pooled(state))
                done_counts.append(state.count)
        width = self.output_dim(vectors.shape[1]) if len(vectors) else 0
        stacked = np.stack(done_vectors).astype(np.float32) if done_vectors else np.zeros((0, width), np.float32)
        return done_ids, stacked, done_counts

    def discard(self, clip_ids) -> None:
        """A clip that failed mid-file: drop the windows it had already sent."""
        for clip_id in clip_ids:
            self.partial.pop(clip_id, None)

    def _pooled(self, state: _Partial) -> np.ndarray:
        mean = state.total / state.count
        if self.pool == "mean":
            return mean
        if self.pool == "max":
            return state.maximum
        return np.concatenate([mean, state.maximum])
