"""The log-mel front ends the audio networks share, run on the model's device in float32 (autocast off).

- `LogMel`: power STFT (periodic Hann, centred) -> Slaney mel filterbank (librosa.filters.mel
  defaults) -> dB. PANNs (32 kHz, 64 bands, reflect padding, 10*log10(max(power, 1e-10)), as
  the published checkpoints' torchlibrosa front end) and the log-mel image route (32 kHz, 128
  bands, zero padding, 10*log10(power + 1e-10)) are this one module with other settings.
- `AudioSetLogMel`: the AudioSet originals' `mel_features.py` (VGGish, YAMNet): 16 kHz, 25 ms
  frames without centring, |rfft| magnitude, HTK mel matrix, log(mel + offset); only the log
  offset differs between the two networks.

The filterbanks are derived, not learned: they are non-persistent buffers, so a network's state
dict keys stay those of its published checkpoints.
"""

from __future__ import annotations

import torch
import torchaudio.functional as audio_functional
from torch import nn

# --- LogMel defaults: the 32 kHz settings PANNs was trained with, shared by the log-mel image route
SAMPLE_RATE = 32000  # Hz
N_FFT = 1024  # STFT size and window length (32 ms)
HOP_LENGTH = 320  # 10 ms, 100 frames per second
F_MIN = 50.0  # lowest mel edge, Hz
F_MAX = 14000.0  # highest mel edge, Hz
POWER_FLOOR = 1e-10  # dB = 10*log10(power + floor), or 10*log10(max(power, floor)) with clamp=True

# --- AudioSetLogMel (VGGish, YAMNet)
AUDIOSET_SAMPLE_RATE = 16000
AUDIOSET_WINDOW_SAMPLES = 400  # 25 ms
AUDIOSET_HOP_SAMPLES = 160  # 10 ms
AUDIOSET_FFT_LENGTH = 512  # next power of two above 400
AUDIOSET_MEL_BANDS = 64
AUDIOSET_MEL_MIN_HZ = 125.0
AUDIOSET_MEL_MAX_HZ = 7500.0
AUDIOSET_EXAMPLE_FRAMES = 96  # 0.96 s examples (VGGish) / patches (YAMNet)


class LogMel(nn.Module):
    """(B, samples) waveform -> (B, n_mels, frames) log-mel in dB, float32, autocast off.

    pad_mode: "constant" (zeros, librosa's default) or "reflect" (PANNs); clamp: floor the power
    at `floor` (librosa.power_to_db's amin, PANNs) instead of adding it.
    """

    def __init__(self, n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                 hop_length: int = HOP_LENGTH, f_min: float = F_MIN, f_max: float = F_MAX, *,
                 pad_mode: str = "constant", floor: float = POWER_FLOOR, clamp: bool = False):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.pad_mode, self.floor, self.clamp = f_min, f_max, pad_mode, floor, clamp
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        fbanks = audio_functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1, f_min=f_min, f_max=f_max, n_mels=n_mels,
            sample_rate=sample_rate, norm="slaney", mel_scale="slaney",
        )  # (freqs, mels)
        self.register_buffer("mel_matrix", fbanks.T.contiguous(), persistent=False)  # (mels, freqs)

    @property
    def filterbank(self) -> torch.Tensor:
        """(n_fft/2+1, n_mels): the layout of librosa.filters.mel(...).T and PANNs' `melW`."""
        return self.mel_matrix.T

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            spectrum = torch.stft(
                waveforms.float(), n_fft=self.n_fft, hop_length=self.hop_length, window=self.window,
                center=True, pad_mode=self.pad_mode, return_complex=True,
            )
            power = spectrum.real.square() + spectrum.imag.square()  # (B, freqs, frames)
            mel = torch.matmul(self.mel_matrix, power)
            mel = torch.clamp(mel, min=self.floor) if self.clamp else mel + self.floor
            return 10.0 * torch.log10(mel)

    def describe(self) -> dict:
        """The settings as JSON, recorded as the extraction's preprocessing."""
        log = f"10*log10(max(power, {self.floor:g}))" if self.clamp else f"10*log10(power + {self.floor:g})"
        return {
            "sample_rate": self.sample_rate, "n_fft": self.n_fft, "win_length": self.n_fft,
            "hop_length": self.hop_length, "window": "hann (periodic)", "center": True, "pad_mode": self.pad_mode,
            "power": 2.0, "n_mels": self.n_mels, "f_min": self.f_min, "f_max": self.f_max,
            "mel_scale": "slaney", "mel_norm": "slaney", "log": log,
        }


def audioset_mel_matrix(num_mel_bins: int = AUDIOSET_MEL_BANDS,
                        num_spectrogram_bins: int = AUDIOSET_FFT_LENGTH // 2 + 1,
                        sample_rate: int = AUDIOSET_SAMPLE_RATE, lower_edge_hertz: float = AUDIOSET_MEL_MIN_HZ,
                        upper_edge_hertz: float = AUDIOSET_MEL_MAX_HZ) -> torch.Tensor:
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

    sample_rate = AUDIOSET_SAMPLE_RATE

    def __init__(self, log_offset: float):
        super().__init__()
        self.log_offset = log_offset
        self.register_buffer("window", torch.hann_window(AUDIOSET_WINDOW_SAMPLES, periodic=True), persistent=False)
        self.register_buffer("mel_matrix", audioset_mel_matrix(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            frames = waveforms.float().unfold(-1, AUDIOSET_WINDOW_SAMPLES, AUDIOSET_HOP_SAMPLES)  # (B, frames, 400)
            magnitude = torch.fft.rfft(frames * self.window, n=AUDIOSET_FFT_LENGTH).abs()  # (B, frames, 257)
            return torch.log(torch.matmul(magnitude, self.mel_matrix) + self.log_offset)

    def describe(self, example_hop_frames: int) -> dict:
        """The settings as JSON; examples (VGGish) or patches (YAMNet) of 96 frames every `example_hop_frames`."""
        return {
            "sample_rate": AUDIOSET_SAMPLE_RATE, "win_length": AUDIOSET_WINDOW_SAMPLES,
            "hop_length": AUDIOSET_HOP_SAMPLES, "n_fft": AUDIOSET_FFT_LENGTH, "window": "hann (periodic)",
            "center": False, "power": 1.0, "n_mels": AUDIOSET_MEL_BANDS, "f_min": AUDIOSET_MEL_MIN_HZ,
            "f_max": AUDIOSET_MEL_MAX_HZ, "mel_scale": "htk (AudioSet mel_features matrix, DC row zeroed)",
            "mel_norm": None, "log": f"log(mel + {self.log_offset:g})",
            "example_frames": AUDIOSET_EXAMPLE_FRAMES, "example_hop_frames": example_hop_frames,
        }


def pad_to_samples(waveforms: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad at the end to at least `samples`."""
    short = samples - waveforms.shape[-1]
    return nn.functional.pad(waveforms, (0, short)) if short > 0 else waveforms
