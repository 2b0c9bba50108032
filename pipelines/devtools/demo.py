"""Demo data made offline: scikit-learn's bundled handwritten digits written out as PNG files.

    python -m pipelines.devtools.demo demo_data         # → demo_data/{train,test}/*.png, train_labels.csv, ...
    python -m pipelines.devtools.demo score demo_data   # accuracy of demo_data/submission.csv on the hidden answers
    python -m pipelines.devtools.demo sounds demo_data/sounds   # synthetic sound classes (wav/flac/ogg, mixed rates)

Real scans (1,797 digits, 8×8, 17 grey levels), so a CV score on them means something.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_SIZE = 64  # pixels; the backbone's own preprocessing resizes from there


def write_digits_dataset(root: str | Path, test_share: float = 0.2, seed: int = 0) -> dict:
    """Write train/test PNGs, train labels, a sample submission and the hidden test answers."""
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    test_count = int(len(order) * test_share)
    splits = {"test": order[:test_count], "train": order[test_count:]}
    for split, indices in splits.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for index in indices:
            path = folder / f"digit-{index:04d}.png"
            if not path.exists():
                to_image(digits.images[index]).save(path)
    write_csv(root / "train_labels.csv", ["id", "label"],
              [(f"digit-{i:04d}", int(digits.target[i])) for i in sorted(splits["train"])])
    write_csv(root / "sample_submission.csv", ["id", "label"], [(f"digit-{i:04d}", 0) for i in sorted(splits["test"])])
    write_csv(root / "test_answers.csv", ["id", "label"],
              [(f"digit-{i:04d}", int(digits.target[i])) for i in sorted(splits["test"])])
    return {split: len(indices) for split, indices in splits.items()}


def to_image(grid: np.ndarray) -> Image.Image:
    """8×8 grid of 0..16 ink values → a dark digit on white paper, smoothly upscaled."""
    paper = (255 - grid * (255 / 16)).astype(np.uint8)
    return Image.fromarray(paper, mode="L").resize((DEMO_SIZE, DEMO_SIZE), Image.Resampling.BICUBIC)


def write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


SOUND_CLASSES = ("tone", "chirp", "noise", "clicks", "tremolo")


def synth_sound(kind: str, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of a synthetic sound class, with random pitch, level and background noise."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(180, 900)
    if kind == "tone":  # a harmonic note
        signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    elif kind == "chirp":  # a rising sweep
        f1 = f0 * rng.uniform(2, 4)
        signal = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    elif kind == "noise":  # band-passed noise (a crude filter: moving average of white noise)
        width = int(rng.integers(2, 12))
        signal = np.convolve(rng.standard_normal(len(t)), np.ones(width) / width, mode="same") * 3
    elif kind == "clicks":  # an impulse train
        signal = np.zeros(len(t))
        signal[:: max(1, int(rate / rng.uniform(4, 20)))] = 1.0
    else:  # tremolo: an amplitude-modulated tone
        signal = np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 9) * t))
    signal = signal / (np.abs(signal).max() + 1e-9) * rng.uniform(0.2, 0.8)
    return (signal + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def write_sounds_dataset(root: str | Path, per_class: int = 40, test_share: float = 0.2, seed: int = 0) -> dict:
    """Synthetic sound classes as wav/flac/ogg files at mixed rates and lengths (0.4–4 s)."""
    import soundfile

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = {"train": [], "test": []}
    formats = [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")]
    for kind in SOUND_CLASSES:
        for index in range(per_class):
            split = "test" if index < per_class * test_share else "train"
            rate = int(rng.choice([16000, 22050, 44100]))
            suffix, subtype = formats[index % len(formats)]
            clip_id = f"{kind}-{index:03d}"
            path = root / split / f"{clip_id}.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            audio = synth_sound(kind, float(rng.uniform(0.4, 4.0)), rate, rng)
            if not path.exists():
                soundfile.write(path, audio, rate, subtype=subtype)
            rows[split].append((clip_id, kind))
    write_csv(root / "train_labels.csv", ["id", "label"], sorted(rows["train"]))
    write_csv(root / "test_answers.csv", ["id", "label"], sorted(rows["test"]))
    return {split: len(r) for split, r in rows.items()}


def hidden_test_accuracy(root: str | Path) -> float:
    """Accuracy of demo_data/submission.csv against the answers the contest would keep hidden."""
    import pandas as pd

    root = Path(root)
    answers = pd.read_csv(root / "test_answers.csv", dtype=str)
    submission = pd.read_csv(root / "submission.csv", dtype=str)
    merged = answers.merge(submission, on="id", suffixes=("_true", "_pred"))
    return float((merged["label_true"] == merged["label_pred"]).mean())


if __name__ == "__main__":
    if sys.argv[1:2] == ["sounds"]:
        root = sys.argv[2] if len(sys.argv) > 2 else "demo_data/sounds"
        counts = write_sounds_dataset(root)
        print(f"demo sounds: {counts['train']} train and {counts['test']} test clips, {len(SOUND_CLASSES)} classes")
    elif sys.argv[1:2] == ["score"]:
        root = sys.argv[2] if len(sys.argv) > 2 else "demo_data"
        print(f"hidden test accuracy of {root}/submission.csv: {hidden_test_accuracy(root):.4f}")
    else:
        counts = write_digits_dataset(sys.argv[1] if len(sys.argv) > 1 else "demo_data")
        print(f"demo data: {counts['train']} train and {counts['test']} test digit images")
