"""Demo data made offline: scikit-learn's bundled handwritten digits written out as PNG files.

    python -m pipelines.demo demo_data         # → demo_data/{train,test}/*.png, train_labels.csv, ...
    python -m pipelines.demo score demo_data   # accuracy of demo_data/submission.csv on the hidden answers

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


def hidden_test_accuracy(root: str | Path) -> float:
    """Accuracy of demo_data/submission.csv against the answers the contest would keep hidden."""
    import pandas as pd

    root = Path(root)
    answers = pd.read_csv(root / "test_answers.csv", dtype=str)
    submission = pd.read_csv(root / "submission.csv", dtype=str)
    merged = answers.merge(submission, on="id", suffixes=("_true", "_pred"))
    return float((merged["label_true"] == merged["label_pred"]).mean())


if __name__ == "__main__":
    if sys.argv[1:2] == ["score"]:
        root = sys.argv[2] if len(sys.argv) > 2 else "demo_data"
        print(f"hidden test accuracy of {root}/submission.csv: {hidden_test_accuracy(root):.4f}")
    else:
        counts = write_digits_dataset(sys.argv[1] if len(sys.argv) > 1 else "demo_data")
        print(f"demo data: {counts['train']} train and {counts['test']} test digit images")
