"""Log-mel backbones: weight-free log-mel statistics, and any timm image model on log-mel "images".

The image route uses the shared front end `frontends.LogMel` (torch.stft + a librosa-style mel
filterbank, run on the model's device in float32 with autocast off; PANNs uses it too):

    sample rate 32 kHz, n_fft 1024 (32 ms periodic Hann window), hop 320 (10 ms),
    center=True with zero padding (librosa's default pad_mode="constant"),
    power spectrogram -> Slaney mel filterbank (librosa.filters.mel defaults: slaney scale,
    slaney area norm), 50-14000 Hz -> 10*log10(power + 1e-10) dB.

"logmel-stats" (308-d, no weights) has its own front end, the one a
careful hand-written probe uses, plus the usual companions that paid on ESC-10 (official folds;
scripts/eval_audio.py measures every set):

    sample rate 16 kHz, n_fft 400 (25 ms periodic Hann), hop 160 (10 ms), center=True with zero
    padding, power spectrogram -> 64 Slaney mel bands from 0 Hz to min(8 kHz, the clip's Nyquist)
    -> natural log(power + 1e-6)  (torch.stft + torchaudio.functional.melscale_fbanks).

    Per-frame features, then the mean and the population std of each over the real frames:
      logmel    the 64 log-mel bands above                                  64 -> 128
      delta     their first time derivative, a 9-frame regression
                (torchaudio.functional.compute_deltas, = librosa.feature.delta mode="nearest")  64 -> 128
      delta2    (not in the default: it added nothing on ESC-10) the delta of the delta
                (compute_deltas twice, HTK style)                          64 -> 128
      mfcc      20 MFCCs: orthonormal DCT-II of the log-mel bands
                (torchaudio.functional.create_dct, = librosa.feature.mfcc(S=logmel))          20 -> 40
      contrast  spectral contrast: 5 octave sub-bands from 200 Hz + the top band
                (librosa.feature.spectral_contrast on the magnitude spectrogram)             6 -> 12
    The embedding is [logmel mean, logmel std, delta mean, delta std, ...] in that order
    (`stats_layout` gives each block's slice). The default is logmel, delta, mfcc, contrast;
    `load_logmel_stats(features=("logmel",))` is the plain 128-d mean/std of the first version,
    `features=STATS_FEATURE_NAMES` adds delta2 (436-d).

    - Bandwidth: the band edges follow each clip's own sample rate (its file's rate, passed in by
      the extract pipeline): an 8 kHz clip gets its 64 mel bands over 0-4 kHz instead of 32 empty
      ones above its Nyquist, and its contrast octaves are scaled the same way (0-100 Hz, octaves
      100 Hz-3.2 kHz, 3.2-4 kHz instead of 0-200 Hz, 200 Hz-6.4 kHz, 6.4-8 kHz; 5 octaves rather
      than librosa's 6 so that the lowest band keeps two 40 Hz bins at 8 kHz files: 6 scored
      ~1 point higher on 44.1 kHz ESC-10, inside the noise, but leaves two bands constant at 8 kHz;
      files below 8 kHz still get a constant lowest contrast band). Band k is then "the k-th band of
      the clip's bandwidth", so a dataset of mixed rates compares bands of different frequencies;
      with one rate (the usual case) every clip has the same bands.
    - Padding: the reader zero-pads clips shorter than a window at their end; frames centred past
      a window's last non-zero sample are left out of the statistics (trailing digital silence
      too: it carries no information either), and the deltas see the last real frame repeated
      there (as if the clip simply ended), so a padded clip gives what the clip alone gives.
    - Floor: log(power + 1e-6) on power of waveforms in [-1, 1]: near-silent frames sit at a floor
      close to the quietest real sounds instead of 100 dB below them, so silence cannot dominate
      the mean and std.
    Measured and left out (no gain on ESC-10 with logistic regression): percentiles (10/50/90) of
    the log-mel bands, per-band max/min and skewness, spectral centroid/flatness, RMS and
    zero-crossing rate.

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
    vectors = backbone.embed(torch.randn(2, 16000 * 10))      # (2, 308), 16 kHz input
"""

from __future__ import annotations

import numpy as np
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
STATS_DELTA_WIDTH = 9  # frames in the delta regression window (librosa.feature.delta's default)
STATS_N_MFCC = 20
CONTRAST_F_MIN = 200.0  # Hz at 8 kHz bandwidth; scaled with a narrower clip's bandwidth
CONTRAST_N_BANDS = 5  # octave sub-bands (+ the top band up to the bandwidth): 5 keeps 2+ bins in the lowest even at 4 kHz
STATS_FEATURE_NAMES = ("logmel", "delta", "delta2", "mfcc", "contrast")  # every block, in embedding order
STATS_FEATURES = ("logmel", "delta", "mfcc", "contrast")  # the default: the ones that paid on ESC-10


class LogMelStats(nn.Module):
    """(B, samples) at 16 kHz -> (B, D): per-feature mean then std over each window's real frames
    of ln(mel power + 1e-6) and its companions (`features`), bands over each clip's own bandwidth."""

    uses_source_rates = True  # AudioBackbone.embed passes each window's file sample rate

    def __init__(self, n_mels: int = STATS_N_MELS, features: tuple[str, ...] = STATS_FEATURES):
        super().__init__()
        unknown = [name for name in features if name not in STATS_FEATURE_NAMES]
        if unknown or not features or len(set(features)) != len(features):
            raise ConfigError(f"logmel-stats features {features!r}: pick distinct names among {STATS_FEATURE_NAMES}")
        self.n_mels, self.features = n_mels, tuple(name for name in STATS_FEATURE_NAMES if name in features)
        self.register_buffer("window", torch.hann_window(STATS_N_FFT, periodic=True), persistent=False)
        dct = audio_functional.create_dct(STATS_N_MFCC, n_mels, norm="ortho")  # (mels, mfcc)
        self.register_buffer("dct", dct.T.contiguous(), persistent=False)  # (mfcc, mels)
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

    def power(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, freqs, frames) power spectrogram, float32."""
        spectrum = torch.stft(
            waveforms.float(), n_fft=STATS_N_FFT, hop_length=STATS_HOP_LENGTH, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )
        return spectrum.real.square() + spectrum.imag.square()

    def logmel(self, waveforms: torch.Tensor, source_rates=None, power: torch.Tensor | None = None) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) ln(mel power + 1e-6), float32, autocast off."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            power = self.power(waveforms) if power is None else power
            limits = _limits(source_rates, len(waveforms))
            mel = torch.empty(len(waveforms), self.n_mels, power.shape[-1], device=power.device)
            for f_max in set(limits):
                rows = [i for i, limit in enumerate(limits) if limit == f_max]
                mel[rows] = torch.matmul(self.mel_matrix(f_max, power.device), power[rows])
            return torch.log(mel + STATS_LOG_FLOOR)

    def forward(self, waveforms: torch.Tensor, source_rates=None) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            power = self.power(waveforms)
            logmel = self.logmel(waveforms, source_rates, power)
            real = real_frames(waveforms, logmel.shape[-1])  # (B, frames)
            per_frame = {"logmel": logmel}
            if "delta" in self.features or "delta2" in self.features:
                delta = _deltas(logmel, real)
                per_frame["delta"] = delta
                if "delta2" in self.features:
                    per_frame["delta2"] = _deltas(delta, real)
            if "mfcc" in self.features:
                per_frame["mfcc"] = torch.matmul(self.dct, logmel)
            if "contrast" in self.features:
                per_frame["contrast"] = spectral_contrast(power, _limits(source_rates, len(waveforms)))
            return torch.cat([_mean_std(per_frame[name], real) for name in self.features], dim=-1)


def stats_layout(features: tuple[str, ...] = STATS_FEATURES, n_mels: int = STATS_N_MELS) -> dict[str, slice]:
    """Where each block sits in the embedding: {"logmel mean": slice(0, 64), "logmel std": ..., ...}."""
    widths = {"logmel": n_mels, "delta": n_mels, "delta2": n_mels, "mfcc": STATS_N_MFCC,
              "contrast": CONTRAST_N_BANDS + 1}
    layout, start = {}, 0
    for name in (name for name in STATS_FEATURE_NAMES if name in features):
        for stat in ("mean", "std"):
            layout[f"{name} {stat}"] = slice(start, start + widths[name])
            start += widths[name]
    return layout


def spectral_contrast(power: torch.Tensor, limits: list[float]) -> torch.Tensor:
    """(B, freqs, frames) power at 16 kHz -> (B, 6, frames) librosa spectral contrast (dB) over
    each clip's bandwidth: the bins up to its band limit, octaves scaled to it."""
    bin_hz = STATS_SAMPLE_RATE / STATS_N_FFT
    magnitude = power.sqrt().cpu().numpy()
    rows = []
    for row, f_max in zip(magnitude, limits):
        bins = int(f_max // bin_hz) + 1  # 0 Hz .. the limit
        n_fft = 2 * (bins - 1)
        rate = bin_hz * n_fft  # a rate whose FFT of n_fft has exactly these bins
        rows.append(_librosa().feature.spectral_contrast(
            S=row[:bins], sr=rate, n_fft=n_fft, fmin=CONTRAST_F_MIN * (rate / 2) / STATS_F_MAX,
            n_bands=CONTRAST_N_BANDS,
        ))
    return torch.from_numpy(np.stack(rows)).float().to(power.device)


def _librosa():
    import librosa  # imported on first use: it takes a second to load

    return librosa


def _limits(source_rates, count: int) -> list[float]:
    return [band_limit(rate) for rate in (source_rates or [None] * count)]


def _deltas(features: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """9-frame regression deltas over the real frames: past the last real frame the features
    are taken as that frame repeated (compute_deltas' "replicate" edge), so padding changes nothing."""
    last = (real.sum(dim=-1).long() - 1).clamp_min(0)  # real frames are a prefix
    tail = features.gather(-1, last.view(-1, 1, 1).expand(-1, features.shape[1], 1))
    filled = torch.where(real.bool().unsqueeze(1), features, tail)
    return audio_functional.compute_deltas(filled, win_length=STATS_DELTA_WIDTH, mode="replicate")


def _mean_std(features: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, n, frames), (B, frames) mask -> (B, 2n): mean then population std over the real frames."""
    real = real.unsqueeze(1)
    count = real.sum(dim=-1)
    mean = (features * real).sum(dim=-1) / count
    std = (((features - mean.unsqueeze(-1)) * real).square().sum(dim=-1) / count).sqrt()
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
def build_logmel_stats(spec: AudioSpec, weights: str | None, features: tuple[str, ...] = STATS_FEATURES) -> Network:
    """Weight-free log-mel statistics (308-d by default; 128-d with features=("logmel",)):
    instant, no download, no GPU needed."""
    if weights is not None and not is_random(weights):
        raise ConfigError(f"{spec.name} is weight-free: drop --weights {weights}")
    model = LogMelStats(features=tuple(features)).eval()
    frontend = {
        "sample_rate": STATS_SAMPLE_RATE, "n_fft": STATS_N_FFT, "win_length": STATS_N_FFT,
        "hop_length": STATS_HOP_LENGTH, "window": "hann (periodic)", "center": True, "pad_mode": "constant",
        "power": 2.0, "n_mels": STATS_N_MELS, "f_min": STATS_F_MIN,
        "f_max": f"min({STATS_F_MAX:g}, the clip's Nyquist)", "mel_scale": "slaney", "mel_norm": "slaney",
        "log": f"ln(power + {STATS_LOG_FLOOR:g})",
        "features": list(model.features),
        "delta": f"torchaudio compute_deltas, {STATS_DELTA_WIDTH} frames, replicate edge (delta2: twice)",
        "mfcc": f"{STATS_N_MFCC}, orthonormal DCT-II of the log-mel bands",
        "contrast": (f"librosa spectral_contrast, {CONTRAST_N_BANDS} octaves from {CONTRAST_F_MIN:g} Hz "
                     "(scaled to the clip's bandwidth) + the top band"),
        "pooling": "concat(mean, population std) per feature over the real frames (end padding left out)",
    }
    return Network(model, "logmel-stats", STATS_SAMPLE_RATE, MIN_SECONDS, frontend,
                   "none: weight-free features", None)


def load_logmel_stats(features: tuple[str, ...] = STATS_FEATURES):
    """The catalog's logmel-stats backbone with another feature set (library use, e.g. the
    ablation in scripts/eval_audio.py); the catalog entry itself is the default set."""
    from dataclasses import replace

    from pipelines.backbones.audio.base import AudioSpec, audio_entry, build_audio_backbone, measure_embedding_dim

    spec = AudioSpec.from_entry(audio_entry("logmel-stats"))
    backbone = build_audio_backbone(spec, None)  # checked against the catalog entry
    if tuple(features) == STATS_FEATURES:
        return backbone
    network = build_logmel_stats(spec, None, features)
    width = measure_embedding_dim(network.model, STATS_SAMPLE_RATE)
    return replace(backbone, model=network.model, frontend=network.frontend, embedding_dim=width)


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


