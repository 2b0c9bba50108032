"""YAMNet (Plakal & Ellis, AudioSet; tensorflow/models research/audioset/yamnet) in PyTorch:
16 kHz waveform -> 1024-d embedding.

Front end, the original features.py (pad_waveform, waveform_to_log_mel_spectrogram,
spectrogram_to_patches) with torch ops on the model's device (float32, autocast off):
    zero-pad at the end to at least 15,600 samples (0.96 s patch + 25 ms - 10 ms) and then to a
    whole number of 0.48 s patch hops; 25 ms frames (400 samples, periodic Hann), 10 ms hop,
    |rfft| with n_fft 512; 64 mel bands 125-7500 Hz (tf.signal.linear_to_mel_weight_matrix: HTK
    mel, triangles linear in mel, DC row zeroed, the same matrix as VGGish); log(mel + 0.001);
    patches of 96 frames (0.96 s) x 64 bands, hop 48 frames (0.48 s).
Network (yamnet.py _YAMNET_LAYER_DEFS): MobileNetV1 on each (1, 96, 64) patch (height = time,
width = mel, as TF's NHWC [patch, 96, 64, 1]): a 3x3/2 conv to 32, then 13 depthwise-separable
blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU) to 64, 128/2, 128, 256/2, 256,
512/2, 512 x5, 1024/2, 1024; no conv biases; BatchNorm eps 1e-4 (TF has center=True,
scale=False: gamma is 1); TF 'same' padding (stride 2 on even sizes pads only after).
Embedding: the global-average-pooled 1024-d features (the layer before the 521-class logits),
averaged over the window's patches: (B, 1024).

State-dict layout: that of the well-known PyTorch port github.com/w-hc/torch_audioset
(torch_audioset/yamnet/model.py; its release yamnet.pth, converted from the TF yamnet.h5 by
tf_2_torch/convert_yamnet.py) loads as is:
    layer1.fused.conv.weight (32, 1, 3, 3)                layer1.fused.bn.{weight,bias,running_mean,running_var,num_batches_tracked}
    layerN.depthwise_conv.conv.weight (C_in, 1, 3, 3)     layerN.depthwise_conv.bn.{...}        N = 2..14
    layerN.pointwise_conv.conv.weight (C_out, C_in, 1, 1) layerN.pointwise_conv.bn.{...}
    classifier.weight (521, 1024)                         classifier.bias (521,)
  with C_out per layer 32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024.
  `*.bn.weight` (TF has no gamma) and `*.bn.num_batches_tracked` may be left out. From the TF
  Keras yamnet.h5: conv kernels [H, W, C_in, C_out] -> transpose(3, 2, 0, 1) (depthwise kernels
  [H, W, C, 1] -> (C, 1, H, W)); bn beta -> bias, moving_mean / moving_variance -> running_*;
  logits kernel [1024, 521] -> transposed.
Weights (`load_audio_backbone("yamnet", weights)`, i.e. --weights): a path (.pth/.pt via torch.load(weights_only=True), or
.safetensors), "random" (seeded, tests only), or None -> WeightsError naming the fixes.

Example:

    backbone, _ = load_audio_backbone("yamnet", "yamnet.pth")
    vectors = backbone.embed(torch.randn(2, 16000 * 10))       # (2, 1024)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipelines.backbones.audio.base import AudioSpec, Network, build_with_weights, init_for_relu, register_network
from pipelines.backbones.audio.frontends import (
    AUDIOSET_HOP_SAMPLES as HOP_SAMPLES,
    AUDIOSET_WINDOW_SAMPLES as WINDOW_SAMPLES,
    AudioSetLogMel,
    pad_to_samples,
)

LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP_FRAMES = 48  # 0.48 s
BATCHNORM_EPSILON = 1e-4
NUM_CLASSES = 521
MIN_SECONDS = 0.96  # shorter windows are padded to one patch inside the model anyway
# (depthwise-separable?, stride, output channels), from yamnet.py _YAMNET_LAYER_DEFS; all kernels 3x3.
LAYERS = (
    (False, 2, 32), (True, 1, 64), (True, 2, 128), (True, 1, 128), (True, 2, 256), (True, 1, 256),
    (True, 2, 512), (True, 1, 512), (True, 1, 512), (True, 1, 512), (True, 1, 512), (True, 1, 512),
    (True, 2, 1024), (True, 1, 1024),
)
FILL_MISSING = (".bn.weight", ".bn.num_batches_tracked")


class ConvBnRelu(nn.Module):
    """Conv (TF 'same' padding, no bias) -> BatchNorm (eps 1e-4) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCHNORM_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(_tf_same_pad(x, self.conv.kernel_size, self.conv.stride))))


class Conv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.fused = ConvBnRelu(in_channels, out_channels, 3, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x)


class SeparableConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise_conv = ConvBnRelu(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise_conv = ConvBnRelu(in_channels, out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class YAMNet(nn.Module):
    """(B, samples) 16 kHz waveform -> (B, 1024) mean pooled features of its patches."""

    def __init__(self):
        super().__init__()
        self.frontend = AudioSetLogMel(LOG_OFFSET)  # no parameters: keys stay torch_audioset's
        channels = 1
        self.layer_names = []
        for index, (separable, stride, out_channels) in enumerate(LAYERS, start=1):
            block = (SeparableConv if separable else Conv)(channels, out_channels, stride)
            self.add_module(f"layer{index}", block)
            self.layer_names.append(f"layer{index}")
            channels = out_channels
        self.classifier = nn.Linear(channels, NUM_CLASSES)  # kept for strict loading; not in the embedding
        init_for_relu(self)

    def patches(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, patches, 96, 64) log-mel patches (float32, autocast off)."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            log_mel = self.frontend(pad_to_samples(waveforms, _padded_samples(waveforms.shape[-1])))
            return log_mel.unfold(1, PATCH_FRAMES, PATCH_HOP_FRAMES).transpose(2, 3)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 96, 64) log-mel patches -> (N, 1024) pooled features, as the original model."""
        x = patches.unsqueeze(1)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        patches = self.patches(waveforms)
        batch, count = patches.shape[:2]
        embedded = self.embed_patches(patches.flatten(0, 1))
        return embedded.view(batch, count, -1).mean(dim=1)


def _padded_samples(samples: int) -> int:
    """features.pad_waveform: at least one patch, then a whole number of patch hops."""
    minimum = WINDOW_SAMPLES + (PATCH_FRAMES - 1) * HOP_SAMPLES  # 15,600
    hop = PATCH_HOP_FRAMES * HOP_SAMPLES  # 7,680
    return minimum + hop * math.ceil(max(0, samples - minimum) / hop)


def _tf_same_pad(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    pads = []
    for size, k, s in zip(x.shape[-2:], kernel, stride):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return nn.functional.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x


@register_network("yamnet")
def build_yamnet(spec: AudioSpec, weights: str | None) -> Network:
    """YAMNet with weights from `weights` (a state dict in torch_audioset's layout, or "random")."""
    model, source, sha = build_with_weights(
        YAMNet, weights, "yamnet",
        "yamnet.pth from github.com/w-hc/torch_audioset releases (or the TF yamnet.h5 converted to the "
        "key layout in pipelines/backbones/audio/yamnet.py)",
        fill_missing=FILL_MISSING,
    )
    frontend = model.frontend.describe(example_hop_frames=PATCH_HOP_FRAMES) | {
        "padding": "zeros at the end: >= 15600 samples, then whole 7680-sample patch hops",
        "embedding": "global average pooled 1024-d features, mean over patches",
    }
    return Network(model, "yamnet", AudioSetLogMel.sample_rate, MIN_SECONDS, frontend, source, sha)
