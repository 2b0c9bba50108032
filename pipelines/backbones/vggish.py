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
Windows: 10 s by default (an AudioSet clip: 10 examples; its last 0.385 s cannot fill an 11th
and is dropped, as in the original), at least 0.96 s (topped up to 0.975 s inside the model).

Weights (`load_vggish(weights)`), never downloaded:
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

    backbone = load_vggish("vggish-10086976.pth")
    vectors = backbone.embed(torch.randn(2, 16000 * 10))       # (2, 128)
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.backbones.audio_base import AudioBackbone, build_with_weights, init_for_relu, measure_embedding_dim

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_LENGTH = 512  # next power of two above 400
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_DIM = 128
WINDOW_SECONDS = 10.0  # an AudioSet clip: 10 examples (the last 0.385 s falls short of an 11th)
MIN_SECONDS = 0.96
FEATURE_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


# ---- front end shared with YAMNet (same STFT and mel matrix; only the log offset differs) ----

def audioset_mel_matrix(num_mel_bins: int = MEL_BANDS, num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
                        sample_rate: int = SAMPLE_RATE, lower_edge_hertz: float = MEL_MIN_HZ,
                        upper_edge_hertz: float = MEL_MAX_HZ) -> torch.Tensor:
    """(spectrogram bins, mel bins) like mel_features.spectrogram_to_mel_matrix (and
    tf.signal.linear_to_mel_weight_matrix): HTK mel, triangles linear in mel, DC row zeroed."""

    def hertz_to_mel(hertz: torch.Tensor) -> torch.Tensor:
        return 1127.0 * torch.log1p(hertz / 700.0)

    bins_mel = hertz_to_mel(torch.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins, dtype=torch.float64))
    edges = torch.linspace(
        float(hertz_to_mel(torch.tensor(lower_edge_hertz, dtype=torch.float64))),
        float(hertz_to_mel(torch.tensor(upper_edge_hertz, dtype=torch.float64))),
        num_mel_bins + 2, dtype=torch.float64,
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (center - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - center)
    matrix = torch.clamp(torch.minimum(lower_slope, upper_slope), min=0.0)
    matrix[0, :] = 0.0
    return matrix.float()


class AudioSetLogMel(nn.Module):
    """(B, samples) 16 kHz -> (B, frames, 64) log(mel magnitude + log_offset), as VGGish/YAMNet."""

    def __init__(self, log_offset: float):
        super().__init__()
        self.log_offset = log_offset
        self.register_buffer("window", torch.hann_window(WINDOW_SAMPLES, periodic=True), persistent=False)
        self.register_buffer("mel_matrix", audioset_mel_matrix(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            frames = waveforms.float().unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES)  # (B, frames, 400)
            magnitude = torch.fft.rfft(frames * self.window, n=FFT_LENGTH).abs()  # (B, frames, 257)
            return torch.log(torch.matmul(magnitude, self.mel_matrix) + self.log_offset)


def pad_to_samples(waveforms: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad at the end to at least `samples`."""
    short = samples - waveforms.shape[-1]
    return nn.functional.pad(waveforms, (0, short)) if short > 0 else waveforms


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
            nn.Linear(4096, EMBEDDING_DIM),  # pre-activation, as the original TF model
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


def load_vggish(weights: str | None) -> AudioBackbone:
    """VGGish with weights from `weights` (a torchvggish state dict file, or "random")."""
    model, source, sha = build_with_weights(
        VGGish, weights, "vggish",
        "the torchvggish port's vggish-10086976.pth (github.com/harritaylor/torchvggish releases)",
    )
    return AudioBackbone(
        name="vggish",
        model=model,
        sample_rate=SAMPLE_RATE,
        window_seconds=WINDOW_SECONDS,
        min_seconds=MIN_SECONDS,
        embedding_dim=measure_embedding_dim(model, SAMPLE_RATE),  # 1 s of silence
        frontend=audioset_frontend(LOG_OFFSET, example_hop_frames=EXAMPLE_FRAMES) | {
            "embedding": "last fc, pre-activation (no ReLU, no PCA/quantization), mean over examples",
        },
        weights_source=source,
        weights_sha256=sha,
        architecture="vggish",
    )


# ---- helpers shared with YAMNet ----

def audioset_frontend(log_offset: float, example_hop_frames: int) -> dict:
    return {
        "sample_rate": SAMPLE_RATE, "win_length": WINDOW_SAMPLES, "hop_length": HOP_SAMPLES,
        "n_fft": FFT_LENGTH, "window": "hann (periodic)", "center": False, "power": 1.0,
        "n_mels": MEL_BANDS, "f_min": MEL_MIN_HZ, "f_max": MEL_MAX_HZ,
        "mel_scale": "htk (AudioSet mel_features matrix, DC row zeroed)", "mel_norm": None,
        "log": f"log(mel + {log_offset:g})",
        "example_frames": EXAMPLE_FRAMES, "example_hop_frames": example_hop_frames,
    }


