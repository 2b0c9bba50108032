"""The four commands chained through files, as a contestant runs them (real extraction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import soundfile
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from tests.audio_files import tone

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def write_colour_images(folder, count, seed):
    """Three classes told apart by their dominant colour."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for index in range(count):
        label = index % 3
        pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        pixels[..., label] += 180
        Image.fromarray(pixels).save(folder / f"im{index:03d}.png")
        labels[f"im{index:03d}"] = f"c{label}"
    return labels


def test_image_chain_with_raw_test_folder(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    labels = write_colour_images(tmp_path / "train", 30, seed=0)
    answers = write_colour_images(tmp_path / "test", 9, seed=1)
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(tmp_path / "labels.csv", index=False)
    tiny = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
    invoke("extract", tmp_path / "train", "-o", tmp_path / "emb", *tiny)
    invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "--folds", "3",
           "-o", tmp_path / "run")
    invoke("predict", tmp_path / "run", tmp_path / "test", "-o", tmp_path / "sub.csv", "--device", "cpu")
    submission = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert sorted(submission["id"]) == sorted(answers)
    accuracy = np.mean([answers[i] == label for i, label in zip(submission["id"], submission["label"])])
    assert accuracy >= 0.8


def test_audio_chain_reuses_the_training_windows_on_raw_clips(tmp_path):
    rows = []
    for split, count in (("train", 24), ("test", 6)):
        (tmp_path / split).mkdir()
        for index in range(count):
            freq = (200, 800, 2400)[index % 3]
            soundfile.write(tmp_path / split / f"{split}{index:02d}.wav", tone(1.3, 16000, freq, index), 16000)
            if split == "train":
                rows.append((f"{split}{index:02d}", f"f{freq}"))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(tmp_path / "labels.csv", index=False)
    invoke("extract", tmp_path / "train", "-o", tmp_path / "emb", "--backbone", "logmel-stats", "--window", "0.5",
           "--pool", "meanmax", "--workers", "0", "--device", "cpu")
    invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "--folds", "3",
           "-o", tmp_path / "run")
    invoke("predict", tmp_path / "run", tmp_path / "test", "-o", tmp_path / "sub.csv", "--device", "cpu")
    submission = pd.read_csv(tmp_path / "sub.csv", dtype=str).set_index("id")["label"]
    expected = {f"test{i:02d}": f"f{(200, 800, 2400)[i % 3]}" for i in range(6)}
    assert submission.to_dict() == expected
