"""The audio front end of a fine-tuned network: clip -> windows -> log-mel images.

It is extract's log-mel image route (pipelines.backbones.logmel.LogMelImage: 32 kHz, 128 Slaney
mel bands, top 80 dB, per-window min-max, time on x, low frequencies at the bottom, bilinear
resize to the network's input, its mean/std), so a fine-tuned network sees during training what
`predict` later feeds it. A clip is cut into windows of `window_seconds` (hop = window, the last
window flush with the clip's end; a shorter clip is zero-padded at its end to one window); a
clip's probabilities are the mean over its windows.

`audio_meta` is what a fold's network.json records under "audio"; `clip_images(path, audio)`
turns a test file into the network's input exactly as validation did (predict uses it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipelines.backbones.logmel import IMAGE_N_MELS, IMAGE_TOP_DB, IMAGE_WINDOW_SECONDS, SAMPLE_RATE, LogMelImage

AUDIO_FRONTEND = "olymp-logmel-image/1"


def audio_meta(input_size, mean, std, window_seconds: float | None) -> dict:
    """The front-end parameters of a fold's network (network.json "audio")."""
    return {
        "frontend": AUDIO_FRONTEND,
        "sample_rate": SAMPLE_RATE,
        "window_seconds": float(window_seconds or IMAGE_WINDOW_SECONDS),
        "hop_seconds": float(window_seconds or IMAGE_WINDOW_SECONDS),
        "n_mels": IMAGE_N_MELS,
        "top_db": IMAGE_TOP_DB,
        "input_size": [int(v) for v in input_size],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "pooling": "mean of the windows' probabilities",
    }


class FrontEnd(nn.Module):
    """(B, samples) windows at 32 kHz -> (B, C, H, W) normalized log-mel images."""

    def __init__(self, audio: dict):
        super().__init__()
        self.images = LogMelImage(nn.Identity(), tuple(audio["input_size"]), tuple(audio["mean"]),
                                  tuple(audio["std"]), n_mels=int(audio["n_mels"])).eval()

    @torch.no_grad()
    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.images.images(windows)


def window_length(audio: dict) -> int:
    return int(round(audio["window_seconds"] * audio["sample_rate"]))


def clip_windows(clip: np.ndarray, window: int) -> np.ndarray:
    """(n_windows, window) float32: hop = window, the last flush with the end; short clips padded."""
    if len(clip) <= window:
        out = np.zeros((1, window), np.float32)
        out[0, : len(clip)] = clip
        return out
    starts = list(range(0, len(clip) - window + 1, window))
    if starts[-1] + window < len(clip):
        starts.append(len(clip) - window)
    return np.stack([clip[s: s + window] for s in starts]).astype(np.float32, copy=False)


def clip_images(path: str, audio: dict, front_end: FrontEnd | None = None) -> torch.Tensor:
    """A file's network inputs (n_windows, C, H, W), as validation computed them."""
    from pipelines.finetune.data import read_clip

    front_end = front_end or FrontEnd(audio)
    windows = clip_windows(read_clip(path, int(audio["sample_rate"])), window_length(audio))
    return front_end(torch.from_numpy(windows))
