"""Small real audio files for tests: every rate, format, depth and kind of damage extract meets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def tone(seconds: float, rate: int, freq: float = 440.0, seed: int = 0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    signal = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    signal = signal.astype(np.float32)
    return np.stack([signal * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else signal


def write_mixed_clips(folder: Path) -> dict[str, Path]:
    """Readable clips: mixed rates, formats, depths and channel counts."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = {
        "wav16k": ("wav", 16000, 1.5, "PCM_16", 1),
        "flac44k": ("flac", 44100, 2.0, "PCM_24", 1),
        "ogg22k": ("ogg", 22050, 1.0, "VORBIS", 1),
        "stereo48k": ("wav", 48000, 1.2, "PCM_16", 2),
        "eightbit": ("wav", 8000, 1.0, "PCM_U8", 1),
        "deep24": ("wav", 32000, 0.7, "PCM_24", 1),
    }
    paths = {}
    for index, (name, (fmt, rate, seconds, subtype, channels)) in enumerate(specs.items()):
        path = folder / f"{name}.{fmt}"
        soundfile.write(path, tone(seconds, rate, 220.0 * (index + 1), index, channels), rate, subtype=subtype)
        paths[name] = path
    return paths


def write_odd_but_valid_clips(folder: Path) -> dict[str, Path]:
    """Clips that must be embedded, not crash: silence, NaN/inf samples, a very short one."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"silent": folder / "silent.wav", "nans": folder / "nans.wav", "blip": folder / "blip.wav"}
    soundfile.write(paths["silent"], np.zeros(16000, np.float32), 16000)
    noisy = tone(1.0, 16000)
    noisy[100:200] = np.nan
    noisy[300] = np.inf
    soundfile.write(paths["nans"], noisy, 16000, subtype="FLOAT")
    soundfile.write(paths["blip"], tone(0.05, 16000), 16000)
    return paths


def write_broken_clips(folder: Path) -> dict[str, Path]:
    """Files with audio extensions that cannot be embedded; each must become an error record."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"empty": folder / "empty.wav", "garbage": folder / "garbage.wav", "zero_frames": folder / "zero.flac",
             "cut": folder / "cut.flac"}
    paths["empty"].write_bytes(b"")
    paths["garbage"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)))
    soundfile.write(paths["zero_frames"], np.zeros(0, np.float32), 16000)
    whole = folder / "whole.tmp.flac"
    soundfile.write(whole, tone(3.0, 16000), 16000)
    data = whole.read_bytes()
    paths["cut"].write_bytes(data[: len(data) // 3])
    whole.unlink()
    return paths
