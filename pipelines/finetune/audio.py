"""The audio front end a fine-tuned network trains on: clip -> windows -> log-mel images.

It is extract's log-mel image route (pipelines.backbones.audio.logmel.LogMelImage.images: 32 kHz,
128 Slaney mel bands, top 80 dB, per-window min-max, time on x, low frequencies at the bottom,
bilinear resize to the network's input size, its mean/std), with the front-end parameters of
network.json's `audio` (pipelines.backbones.finetuned.AudioFrontEnd). Windows are cut as extract's
audio reader cuts them (pipelines.extract.readers.audio: hop = window, the last flush with the
clip's end; a shorter clip is one window zero-padded to a multiple of 0.25 s), so predict,
which feeds test clips through network.audio_frontend, sees what validation saw. A clip's
probabilities are the mean over its windows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipelines.backbones.audio.frontends import LogMel
from pipelines.backbones.audio.logmel import IMAGE_WINDOW_SECONDS, MIN_SECONDS, LogMelImage
from pipelines.extract.readers.audio import WindowPlan, window_starts


def front_end_settings(window_seconds: float | None):
    """network.json's `audio` for a run (AudioFrontEnd: the log-mel image route's defaults)."""
    from pipelines.backbones.finetuned import AudioFrontEnd

    return AudioFrontEnd(window_seconds=float(window_seconds or IMAGE_WINDOW_SECONDS), min_seconds=MIN_SECONDS)


class FrontEnd(nn.Module):
    """(B, samples) windows -> (B, C, H, W) normalized log-mel images (no gradients)."""

    def __init__(self, audio, data_config: dict):
        super().__init__()
        self.images = LogMelImage(nn.Identity(), tuple(data_config["input_size"]), tuple(data_config["mean"]),
                                  tuple(data_config["std"]), n_mels=audio.n_mels).eval()
        self.images.logmel = LogMel(audio.n_mels, audio.sample_rate, audio.n_fft, audio.hop_length, audio.f_min, audio.f_max)

    @torch.no_grad()
    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.images.images(windows)


def window_plan(audio) -> WindowPlan:
    return WindowPlan.from_seconds(audio.sample_rate, audio.window_seconds, audio.window_seconds, audio.min_seconds)


def clip_windows(clip: np.ndarray, plan: WindowPlan) -> list[np.ndarray]:
    """The clip's windows as extract's audio reader cuts them."""
    if len(clip) >= plan.window:
        return [clip[s: s + plan.window] for s in window_starts(len(clip), plan.window, plan.hop)]
    out = np.zeros(plan.padded_length(len(clip)), np.float32)
    out[: len(clip)] = clip
    return [out]
