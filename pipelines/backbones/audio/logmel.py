"""Log-mel backbones: weight-free log-mel statistics, and any timm image model on log-mel "images".

The image route uses the shared front end `frontends.LogMel` (torch.stft + a librosa-style mel
filterbank, run on the model's device in float32 with autocast off; PANNs uses it too):

    sample rate 32 kHz, n_fft 1024 (32 ms periodic Hann window), hop 320 (10 ms),
    center=True with zero padding (librosa's default pad_mode="constant"),
    power spectrogram -> Slaney mel filterbank (librosa.filters.mel defaults: slaney scale,
    slaney area norm), 50-14000 Hz -> 10*log10(power + 1e-10) dB.

"logmel-stats" (128-d, no weights) has its own front end, the one a
careful hand-written probe uses (it scores ~80% on ESC-10 with a standardized logistic
regression, where the 32 kHz dB statistics above scored 75%):

    sample rate 16 kHz, n_fft 400 (25 ms periodic Hann), hop 160 (10 ms), center=True with zero
    padding, power spectrogram -> 64 Slaney mel bands from 0 Hz to min(8 kHz, the clip's Nyquist)
    -> natural log(power + 1e-6).

    - Bandwidth: the band edges follow each clip's own sample rate (its file's rate, passed in by
      the extract pipeline): an 8 kHz clip gets its 64 bands over 0-4 kHz instead of 32 empty
      ones above its Nyquist. Band k is then "the k-th of 64 mel bands of the clip's bandwidth",
      so a dataset of mixed rates compares bands of different frequencies; with one rate (the
      usual case) every clip has the same bands.
    - Padding: the reader zero-pads clips shorter than a window at their end; frames centred past
      a window's last non-zero sample are left out of the statistics (trailing digital silence
      too: it carries no information either).
    - Floor: log(power + 1e-6) on power of waveforms in [-1, 1]: near-silent frames sit at a floor
      close to the quietest real sounds instead of 100 dB below them, so silence cannot dominate
      the mean and std.
    The embedding is the per-band mean over the real frames followed by the per-band population
    std over them, i.e. [mean_0..mean_63, std_0..std_63]. Companions (deltas, MFCCs, spectral
    contrast, percentiles) are not added: they have not been measured yet.

The log-mel image route, any timm name (route 1: audio -> log-mel -> ImageNet CNN): 128 mel
bands; each window becomes an image:
    1. dB clamped to the window's top 80 dB (max - 80, like librosa.power_to_db(top_db=80));
    2. min-max scaled to [0, 1] within that window (depends on that window only, so a clip gives
       the same image alone or inside a batch; a silent window becomes all zeros);
    3. laid out with time on the x-axis and mel on the y-axis, low frequencies at the bottom
       (row 0 = highest band), then bilinearly resized (align_corners=False) to the model's
       data_config input_size (H, W);
    4. repeated to the model's input channels and normalized with its data_config mean/std;
    5. the model's pooled pre-logits (`forward_head(..., pre_logits=True)`) are the embedding.
Default window 5 s (the catalog's window_seconds of the "both" entries; 501 frames squeezed
into e.g. 224 pixels); weights as for image backbones
(`load_backbone`: the packaged efficientnet_lite0 works offline, a path, or "random").

Example:

    backbone, _ = load_audio_backbone("logmel-stats")
    vectors = backbone.embed(torch.randn(2, 16000 * 10))      # (2, 128), 16 kHz input
"""

from __future__ import annotations

import torch
import torchaudio.functional as audio_functional
from torch import nn

from pipelines.backbones.audio.base import AudioSpec, Network, register_network
from pipelines.backbones.audio.frontends import SAMPLE_RATE, LogMel
from pipelines.backbones.checkpoints import is_random
from pipelines.backbones.registry import load_backbone
from pipelines.core.errors import ConfigError

STATS_SAMPLE_RATE = 16000
STATS_N_FFT = 400
STATS_HOP_LENGTH = 160
STATS_F_MIN = 0.0
STATS_F_MAX = 8000.0
STATS_LOG_FLOOR = 1e-6  # log(power + STATS_LOG_FLOOR)
STATS_N_MELS = 64
IMAGE_N_MELS = 128
IMAGE_WINDOW_SECONDS = 5.0  # for timm models outside the catalog (catalog entries carry window_seconds)
IMAGE_TOP_DB = 80.0
MIN_SECONDS = 0.1


class LogMelStats(nn.Module):
    """(B, samples) at 16 kHz -> (B, 2 * n_mels): per-band mean then std of log(mel power + 1e-6)
    over each window's real frames, with the bands spread over each clip's own bandwidth."""

    uses_source_rates = True  # AudioBackbone.embed passes each window's file sample rate

    def __init__(self, n_mels: int = STATS_N_MELS):
        super().__init__()
        self.n_mels = n_mels
        self.register_buffer("window", torch.hann_window(STATS_N_FFT, periodic=True), persistent=False)
        self._banks: dict[tuple[float, str], torch.Tensor] = {}

    def mel_matrix(self, f_max: float, device: torch.device) -> torch.Tensor:
        key = (f_max, str(device))
        if key not in self._banks:
            fbanks = audio_functional.melscale_fbanks(
                n_freqs=STATS_N_FFT // 2 + 1, f_min=STATS_F_MIN, f_max=f_max, n_mels=self.n_mels,
                sample_rate=STATS_SAMPLE_RATE, norm="slaney", mel_scale="slaney",
            )
            self._banks[key] = fbanks.T.contiguous().to(device)  # (mels, freqs)
        return self._banks[key]

    def logmel(self, waveforms: torch.Tensor, source_rates=None) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) ln(mel power + 1e-6), float32, autocast off."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            spectrum = torch.stft(
                waveforms.float(), n_fft=STATS_N_FFT, hop_length=STATS_HOP_LENGTH, window=self.window,
                center=True, pad_mode="constant", return_complex=True,
            )
            power = spectrum.real.square() + spectrum.imag.square()  # (B, freqs, frames)
            limits = [band_limit(rate) for rate in (source_rates or [None] * len(waveforms))]
            mel = torch.empty(len(waveforms), self.n_mels, power.shape[-1], device=power.device)
            for f_max in set(limits):
                rows = [i for i, limit in enumerate(limits) if limit == f_max]
                mel[rows] = torch.matmul(self.mel_matrix(f_max, power.device), power[rows])
            return torch.log(mel + STATS_LOG_FLOOR)

    def forward(self, waveforms: torch.Tensor, source_rates=None) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            logmel = self.logmel(waveforms, source_rates)
            real = real_frames(waveforms, logmel.shape[-1]).unsqueeze(1)  # (B, 1, frames)
            count = real.sum(dim=-1)
            mean = (logmel * real).sum(dim=-1) / count
            std = (((logmel - mean.unsqueeze(-1)) * real).square().sum(dim=-1) / count).sqrt()
            return torch.cat([mean, std], dim=-1)


def band_limit(source_rate) -> float:
    """Top mel edge for a clip: 8 kHz, or its Nyquist when its file has a lower rate."""
    if not source_rate:
        return STATS_F_MAX
    return float(min(STATS_F_MAX, source_rate / 2))


def real_frames(waveforms: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(B, frames) float mask: frames centred at most one sample past each window's last non-zero one."""
    samples = waveforms.shape[-1]
    nonzero = waveforms != 0
    positions = torch.arange(samples, device=waveforms.device)
    last = torch.where(nonzero, positions, -1).amax(dim=-1)  # -1: an all-zero window
    length = torch.where(last < 0, torch.full_like(last, samples), last + 1)
    centres = torch.arange(n_frames, device=waveforms.device) * STATS_HOP_LENGTH
    mask = centres.unsqueeze(0) <= length.unsqueeze(1)
    mask[:, 0] = True  # at least one frame
    return mask.float()


class LogMelImage(nn.Module):
    """(B, samples) -> log-mel image per window -> timm model's pooled pre-logits (B, D)."""

    def __init__(self, image_model: nn.Module, input_size: tuple[int, int, int],
                 mean: tuple[float, ...], std: tuple[float, ...], n_mels: int = IMAGE_N_MELS):
        super().__init__()
        self.logmel = LogMel(n_mels)
        self.image_model = image_model
        self.channels, self.height, self.width = (int(v) for v in input_size)
        self.register_buffer("mean", _per_channel(mean, self.channels), persistent=False)
        self.register_buffer("std", _per_channel(std, self.channels), persistent=False)

    def images(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The normalized (B, C, H, W) images the image model sees (float32, autocast off)."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            db = self.logmel(waveforms)  # (B, mels, frames)
            top = db.amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, top - IMAGE_TOP_DB)
            low = db.amin(dim=(1, 2), keepdim=True)
            unit = (db - low) / (top - low).clamp_min(1e-6)  # a silent window: all zeros
            unit = unit.flip(1).unsqueeze(1)  # (B, 1, mels, frames), low frequencies at the bottom
            unit = nn.functional.interpolate(unit, size=(self.height, self.width), mode="bilinear",
                                             align_corners=False)
            return (unit.expand(-1, self.channels, -1, -1) - self.mean) / self.std

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        images = self.images(waveforms)
        return self.image_model.forward_head(self.image_model.forward_features(images), pre_logits=True)


@register_network("logmel.stats")
def build_logmel_stats(spec: AudioSpec, weights: str | None) -> Network:
    """Weight-free per-band log-mel mean and std (128-d): instant, no download, no GPU needed."""
    if weights is not None and not is_random(weights):
        raise ConfigError(f"{spec.name} is weight-free: drop --weights {weights}")
    frontend = {
        "sample_rate": STATS_SAMPLE_RATE, "n_fft": STATS_N_FFT, "win_length": STATS_N_FFT,
        "hop_length": STATS_HOP_LENGTH, "window": "hann (periodic)", "center": True, "pad_mode": "constant",
        "power": 2.0, "n_mels": STATS_N_MELS, "f_min": STATS_F_MIN,
        "f_max": f"min({STATS_F_MAX:g}, the clip's Nyquist)", "mel_scale": "slaney", "mel_norm": "slaney",
        "log": f"ln(power + {STATS_LOG_FLOOR:g})",
        "pooling": "concat(mean, population std) over the real frames (end padding left out)",
    }
    return Network(LogMelStats().eval(), "logmel-stats", STATS_SAMPLE_RATE, MIN_SECONDS, frontend,
                   "none: weight-free features", None)


@register_network("logmel.image")
def build_logmel_image(spec: AudioSpec, weights: str | None) -> Network:
    """A timm image backbone on log-mel images; weights resolved by `load_backbone` (offline)."""
    image = load_backbone(spec.timm_name, weights)
    config = image.data_config
    input_size = tuple(int(v) for v in config["input_size"])
    model = LogMelImage(image.model, input_size, tuple(config["mean"]), tuple(config["std"])).eval()
    frontend = {
        **model.logmel.describe(),
        "image": {
            "top_db": IMAGE_TOP_DB,
            "scaling": "per-window min-max to [0, 1] after clamping to the top 80 dB",
            "layout": "x = time, y = mel (low frequencies at the bottom)",
            "resize": "bilinear, align_corners=False",
            "input_size": list(input_size),
            "mean": [float(v) for v in config["mean"]],
            "std": [float(v) for v in config["std"]],
        },
    }
    return Network(model, f"logmel-image:{image.timm_name}", model.logmel.sample_rate, MIN_SECONDS, frontend,
                   image.weights_source, image.weights_sha256)


def _per_channel(values: tuple[float, ...], channels: int) -> torch.Tensor:
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * channels
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


