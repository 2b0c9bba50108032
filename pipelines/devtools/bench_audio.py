"""`make bench`, audio rows: PANNs Cnn14 (random weights) on generated 10 s clips.

(a) `extract` end to end, (b) forward-only on waveforms already in memory (same batch size,
threads, precision), (c) a naive loop — librosa load → librosa mel → one forward per clip —
and the ratios a/b, a/c; then the log-mel alone: torchaudio in batches vs librosa per clip.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CLIP_SECONDS = 10.0
SOURCE_RATE = 44100  # contest audio is rarely at the model's 32 kHz: resampling is part of the cost


def write_clips(folder: Path, count: int, seed: int = 0) -> list[Path]:
    import soundfile

    from pipelines.devtools.demo import SOUND_CLASSES, synth_sound

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"clip-{index:04d}.wav"
        soundfile.write(path, synth_sound(SOUND_CLASSES[index % len(SOUND_CLASSES)], CLIP_SECONDS, SOURCE_RATE, rng),
                        SOURCE_RATE)
        paths.append(path)
    return paths


def librosa_logmel(path: Path) -> np.ndarray:
    import librosa

    from pipelines.backbones.audio import panns

    audio, _ = librosa.load(path, sr=panns.SAMPLE_RATE, mono=True)
    power = librosa.feature.melspectrogram(y=audio, sr=panns.SAMPLE_RATE, n_fft=panns.N_FFT, hop_length=panns.HOP_LENGTH,
                                           n_mels=panns.N_MELS, fmin=panns.F_MIN, fmax=panns.F_MAX)
    return librosa.power_to_db(power, ref=1.0, amin=panns.AMIN, top_db=None).T  # (frames, mels)


def bench_audio(count: int = 24, device_name: str = "auto") -> dict:
    from pipelines.backbones.audio.panns import load_panns
    from pipelines.extract.mappers.audio import AudioMapper
    from pipelines.extract.config import ExtractConfig
    from pipelines.core.device import resolve_device
    from pipelines.extract.runner import run_extraction
    from pipelines.extract.stages import default_audio_batch_size

    device = resolve_device(device_name)
    backbone = load_panns("panns-cnn14", "random")
    batch_size = default_audio_batch_size(device)
    with tempfile.TemporaryDirectory(prefix="olymp-bench-audio-") as tmp:
        paths = write_clips(Path(tmp) / "clips", count)

        mapper = AudioMapper(backbone, device)
        batch = torch.randn(batch_size, int(CLIP_SECONDS * backbone.sample_rate))
        mapper(batch)
        started = time.perf_counter()
        rounds = max(1, count // batch_size)
        for _ in range(rounds):
            mapper(batch)
        forward = rounds * batch_size / (time.perf_counter() - started)

        summary = run_extraction(ExtractConfig(inputs=str(Path(tmp) / "clips"), output=str(Path(tmp) / "emb"),
                                               backbone="panns-cnn14", weights="random", device=device_name))
        end_to_end = summary.items_per_second

        model = backbone.model.to(device).eval()
        naive_paths = paths[: max(4, count // 4)]
        started = time.perf_counter()
        with torch.inference_mode():
            for path in naive_paths:
                logmel = torch.from_numpy(librosa_logmel(path))[None, None].to(device)
                model.embed_logmel(logmel).cpu()
        naive = len(naive_paths) / (time.perf_counter() - started)

        waveforms = torch.randn(count, int(CLIP_SECONDS * backbone.sample_rate), device=device)
        frontend = model.logmel
        frontend(waveforms[:batch_size])
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, count, batch_size):
                frontend(waveforms[start:start + batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
        device_logmel = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for path in naive_paths:
            librosa_logmel(path)
        cpu_logmel = len(naive_paths) / (time.perf_counter() - started)
    row = {"backbone": "panns-cnn14 (random)", "device": str(device), "precision": mapper.precision,
           "batch_size": batch_size, "clips": count, "clip_seconds": CLIP_SECONDS,
           "extract_clips_s": end_to_end, "forward_only_clips_s": forward, "naive_loop_clips_s": naive,
           "extract_over_forward": end_to_end / forward, "extract_over_naive": end_to_end / naive,
           "logmel_device_clips_s": device_logmel, "logmel_librosa_clips_s": cpu_logmel,
           "logmel_device_over_librosa": device_logmel / cpu_logmel}
    print(f"{'panns-cnn14':<20} {row['device']:<6} {row['precision']:<5} bs {batch_size:<4} extract "
          f"{end_to_end:8.2f} clips/s | forward-only {forward:8.2f} | naive {naive:7.2f} | "
          f"a/b {row['extract_over_forward']:.2f} | a/c {row['extract_over_naive']:.2f}", flush=True)
    print(f"{'log-mel':<20} {row['device']:<6} torchaudio {device_logmel:8.1f} clips/s | librosa (load + mel) "
          f"{cpu_logmel:7.1f} | ratio {row['logmel_device_over_librosa']:.1f}", flush=True)
    return row
