"""Mapper stage: uint8 image batches → embeddings, on the chosen device.

Normalization happens on the device (uint8 crosses the bus: 4× less than float32). The forward
runs in channels_last layout, on CUDA under bf16 autocast (fp16 where bf16 is missing).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from pipelines.errors import ConfigError


# CPU: small batches stay in cache (measured: lite0 60 img/s at 16 vs 25 at 32 on 2 cores);
# GPU: large batches keep it busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 128}


def default_batch_size(device: torch.device) -> int:
    return DEFAULT_BATCH_SIZE.get(device.type, 32)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested} asked for, but no CUDA GPU is visible; use --device cpu or auto")
    try:
        return torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None


class ImageMapper:
    """Holds the frozen backbone on its device and embeds one batch at a time."""

    def __init__(self, backbone, device: torch.device):
        self.backbone = backbone
        self.device = device
        self.model = backbone.model.to(device).eval()
        mean = torch.tensor(backbone.data_config["mean"], dtype=torch.float32, device=device)
        std = torch.tensor(backbone.data_config["std"], dtype=torch.float32, device=device)
        # (x / 255 - mean) / std folded into one multiply-add per pixel.
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self.shift = (-mean / std).view(1, -1, 1, 1)
        self.on_cuda = device.type == "cuda"
        # channels_last is faster on both: cuDNN tensor cores on GPU, oneDNN kernels on CPU
        # (measured +25-50% for efficientnet_lite0/resnet50 on a 2-core CPU).
        self.model = self.model.to(memory_format=torch.channels_last)
        if self.on_cuda:
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            torch.backends.cudnn.benchmark = True

    def _autocast(self):
        if self.on_cuda:
            return torch.autocast("cuda", dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        batch = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        batch = batch.float().mul_(self.scale).add_(self.shift)
        with self._autocast():
            embeddings = self.backbone.embed(batch)
        return embeddings.float().cpu().numpy()
