"""VGGish (Hershey et al. 2017, AudioSet) in PyTorch: 16 kHz waveform -> 128-d embedding.

Front end (`AudioSetLogMel`), the original `vggish_input.py` + `mel_features.py` redone with
torch ops on the model's device (float32, autocast off):
    16 kHz; 25 ms frames (400 samples, periodic Hann), 10 ms hop (160), no centering/padding;
    |rfft| with n_fft 512 (magnitude, power 1); 64 mel bands 125-7500 Hz from the original's own
    matrix (HTK mel 1127*ln(1 + f/700), triangles linear in mel, peak 1, no area norm, DC row
    zeroed); log(mel + 0.01); framed into non-overlapping examples of 96 frames (0.96 s) x 64.
    Only complete examples are used (as in the original): a window of n samples gives
    1 + ((n - 400) // 160 - 95) // 96 examples; inputs shorter than 15,600 samples (0.975 s, one
    example) are zero-padded to it inside the model.
Network: the torchvggish port (github.com/harritaylor/torchvggish, torchvggish/vggish.py):
    features: conv64, pool, conv128, pool, conv256 x2, pool, conv512 x2, pool (3x3 convs, ReLU);
    the (N, 512, 6, 4) map is flattened in TF's NHWC order (permute(0, 2, 3, 1)) before
    embeddings: fc 12288->4096, ReLU, fc 4096->4096, ReLU, fc 4096->128.
Embedding: the 128-d output of the last fc, PRE-activation, as in the original TF model
(vggish_slim.py: fc2 with activation_fn=None; its README: "the embedding layer does not include
a final non-linear activation"). The torchvggish port adds a final ReLU (torchvggish issue #24);
it has no weights, so its state dicts load unchanged. The PCA whitening + 8-bit quantization of
the released AudioSet features is NOT applied. A window's examples are averaged: (B, 128).
Windows: 10 s by default (the catalog's window_seconds: an AudioSet clip: 10 examples; its last 0.385 s cannot fill an 11th
and is dropped, as in the original), at least 0.96 s (topped up to 0.975 s inside the model).

Weights (`load_audio_backbone("vggish", weights)`, i.e. --weights), never downloaded:
    a path: a PyTorch state dict (.pth/.pt via torch.load(weights_only=True), or .safetensors)
    in the torchvggish layout, e.g. vggish-10086976.pth from the torchvggish release:
        features.0.weight (64, 1, 3, 3)      features.0.bias (64,)
        features.3.weight (128, 64, 3, 3)    features.3.bias (128,)
        features.6.weight (256, 128, 3, 3)   features.6.bias (256,)
        features.8.weight (256, 256, 3, 3)   features.8.bias (256,)
        features.11.weight (512, 256, 3, 3)  features.11.bias (512,)
        features.13.weight (512, 512, 3, 3)  features.13.bias (512,)
        embeddings.0.weight (4096, 12288)    embeddings.0.bias (4096,)
        embeddings.2.weight (4096, 4096)     embeddings.2.bias (4096,)
        embeddings.4.weight (128, 4096)      embeddings.4.bias (128,)
      (the PCA parameters, vggish_pca_params-*.pth, are a separate file and not used);
    "random": seeded random init (meaningless embeddings: tests only);
    None: WeightsError naming the fixes.

Example:

    backbone, _ = load_audio_backbone("vggish", "vggish-10086976.pth")
    vectors = backbone.embed(torch.randn(2, 16000 * 10))       # (2, 128)
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.backbones.audio.base import AudioSpec, Network, build_with_weights, init_for_relu, register_network
from pipelines.backbones.audio.frontends import (
    AUDIOSET_EXAMPLE_FRAMES as EXAMPLE_FRAMES,
    AUDIOSET_HOP_SAMPLES as HOP_SAMPLES,
    AUDIOSET_MEL_BANDS as MEL_BANDS,
    AUDIOSET_WINDOW_SAMPLES as WINDOW_SAMPLES,
    AudioSetLogMel,
    pad_to_samples,
)

LOG_OFFSET = 0.01
EMBEDDING_WIDTH = 128  # the last fc's outputs (the catalog's embedding_dim is checked against a forward)
MIN_SECONDS = 0.96
FEATURE_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


# ---- network ----

class VGGish(nn.Module):
    """(B, samples) 16 kHz waveform -> (B, 128) mean pre-activation embedding of its examples."""

    def __init__(self):
        super().__init__()
        self.frontend = AudioSetLogMel(LOG_OFFSET)  # no parameters: state_dict keys stay torchvggish's
        self.features = _feature_layers()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_WIDTH),  # pre-activation, as the original TF model
        )
        init_for_relu(self)

    def examples(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, examples, 96, 64) log-mel examples (float32, autocast off)."""
        min_samples = WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * HOP_SAMPLES
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            log_mel = self.frontend(pad_to_samples(waveforms, min_samples))  # (B, frames, 64)
            count = log_mel.shape[1] // EXAMPLE_FRAMES
            return log_mel[:, : count * EXAMPLE_FRAMES].reshape(log_mel.shape[0], count, EXAMPLE_FRAMES, MEL_BANDS)

    def embed_examples(self, examples: torch.Tensor) -> torch.Tensor:
        """(N, 96, 64) log-mel examples -> (N, 128), as the original model."""
        x = self.features(examples.unsqueeze(1))  # (N, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF's NHWC flatten order
        return self.embeddings(x)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        examples = self.examples(waveforms)
        batch, count = examples.shape[:2]
        embedded = self.embed_examples(examples.flatten(0, 1))
        return embedded.view(batch, count, -1).mean(dim=1)


def _feature_layers() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for spec in FEATURE_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(spec), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(spec)
    return nn.Sequential(*layers)


@register_network("vggish")
def build_vggish(spec: AudioSpec, weights: str | None) -> Network:
    """VGGish with weights from `weights` (a torchvggish state dict file, or "random")."""
    model, source, sha = build_with_weights(
        VGGish, weights, "vggish",
        "the torchvggish port's vggish-10086976.pth (github.com/harritaylor/torchvggish releases)",
    )
    frontend = model.frontend.describe(example_hop_frames=EXAMPLE_FRAMES) | {
        "embedding": "last fc, pre-activation (no ReLU, no PCA/quantization), mean over examples",
    }
    return Network(model, "vggish", AudioSetLogMel.sample_rate, MIN_SECONDS, frontend, source, sha)
