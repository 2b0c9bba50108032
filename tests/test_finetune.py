"""olymp finetune (training side) through the CLI and the library, on tiny images and clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from pipelines.finetune.config import FinetuneConfig
from pipelines.finetune.finetune import finetune
from pipelines.backbones.finetuned import load_network
from pipelines.data import cv
from pipelines.data.tasks import infer_task

runner = CliRunner()
TINY = ["--backbone", "test_efficientnet", "--weights", "random", "--folds", "2", "--epochs", "2",
        "--resolution", "32", "--batch-size", "8", "--views", "2", "--patience", "5"]


def invoke(*args):
    return runner.invoke(app, ["finetune", *map(str, args)])


def write_coloured(folder: Path, count: int = 16) -> Path:
    """`count` small PNGs whose class (red/green) is their dominant colour, a labels CSV, and one
    corrupt file that is labelled too."""
    rng = np.random.default_rng(0)
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(count):
        pixels = rng.integers(0, 60, (24, 28, 3), dtype=np.uint8)
        pixels[..., i % 2] += 150
        Image.fromarray(pixels).save(images / f"im{i:02d}.png")
        rows.append((f"im{i:02d}", "red" if i % 2 == 0 else "green"))
    (images / "broken.png").write_bytes(b"not an image")
    rows.append(("broken", "red"))
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        writer.writerows(rows)
    return labels


@pytest.fixture
def coloured(tmp_path):
    labels = write_coloured(tmp_path)
    return tmp_path / "images", labels


def test_two_fold_run_end_to_end(tmp_path, coloured):
    images, labels = coloured
    run = tmp_path / "run"
    result = invoke(images, "--labels", labels, "-o", run, *TINY, "--train-layers", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "cached" and summary["n_rows"] == 16 and summary["n_errors"] == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "finetune_run" and manifest["networks"] == ["fold-0", "fold-1"]
    assert manifest["modality"] == "image" and manifest["classes"] == ["green", "red"]
    assert manifest["finetune"]["train_layers"] == "1"
    # the corrupt file is recorded, not trained on
    errors = pd.read_csv(run / "errors.csv")
    assert errors["id"].tolist() == ["broken"] and "not a readable image" in errors["error"][0]
    folds = pd.read_csv(run / "folds.csv", dtype={"id": str})
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert "broken" not in set(folds["id"]) and len(oof) == 16
    assert list(oof.columns) == ["id", "fold", "green", "red"]
    assert np.allclose(oof[["green", "red"]].sum(axis=1), 1.0)
    # the same folds train-head draws for the same labels and seed (so the runs blend)
    target = infer_task(np.asarray(["red" if int(i[2:]) % 2 == 0 else "green" for i in folds["id"]], dtype=object))
    expected, _ = cv.assign_folds(target, 2, 42)
    assert folds["fold"].tolist() == expected.tolist()
    scores = json.loads((run / "scores.json").read_text())
    assert {fold["fold"] for fold in scores["folds"]} == {0, 1}
    # each fold's network loads and predicts what oof.csv says for its validation rows
    model, meta = load_network(run / "fold-0")
    assert meta.fold == 0 and meta.classes == ["green", "red"] and tuple(meta.data_config["input_size"]) == (3, 32, 32)
    from pipelines.backbones.finetuned import eval_transform
    from pipelines.finetune.data import load_image

    row = oof[oof["fold"] == 0].iloc[0]
    batch = eval_transform(meta)(load_image(str(images / f"{row['id']}.png"))).unsqueeze(0)
    with torch.no_grad():
        proba = model(batch).softmax(dim=1)[0].numpy()
    assert np.allclose(proba, row[["green", "red"]].to_numpy(dtype=float), atol=2e-3)
    assert not (run / ".olymp-finetune-in-progress.json").exists()
    assert not list(run.glob("fold-*/checkpoint*")) and not list(run.glob("fold-*/done.json"))
    # a finished run is not replaced without --overwrite
    again = invoke(images, "--labels", labels, "-o", run, *TINY, "--train-layers", "1")
    assert again.exit_code == 1 and "--overwrite" in again.output


class Killed(Exception):
    pass


def test_resume_after_kill_mid_fold_repeats_no_epoch(tmp_path, coloured):
    images, labels = coloured
    base = dict(inputs=str(images), labels=str(labels), backbone="test_efficientnet", weights="random", folds=2,
                epochs=3, resolution=32, batch_size=8, views=2, train_layers="1", patience=5, device="cpu")
    epochs = []

    def killer(kind, message, data):
        if kind == "epoch":
            epochs.append((data["fold"], data["epoch"]))
            if (data["fold"], data["epoch"]) == (1, 1):
                raise Killed()

    run = tmp_path / "killed"
    with pytest.raises(Killed):
        finetune(FinetuneConfig(output=str(run), **base), on_progress=killer)
    assert epochs == [(0, 1), (0, 2), (0, 3), (1, 1)]
    assert (run / "fold-1" / "checkpoint.safetensors").is_file() and (run / "fold-0" / "done.json").is_file()
    assert (run / "fold-0" / "network.safetensors").is_file() and not (run / "manifest.json").exists()

    resumed = invoke(images, "--labels", labels, "-o", run, "--backbone", "test_efficientnet", "--weights", "random",
                     "--folds", "2", "--epochs", "3", "--resolution", "32", "--batch-size", "8", "--views", "2",
                     "--train-layers", "1", "--patience", "5", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert "fold 0: reused" in resumed.output and "resuming after epoch 1" in resumed.output
    assert "fold 0 epoch" not in resumed.output and "fold 1 epoch 1/3" not in resumed.output
    assert "fold 1 epoch 2/3" in resumed.output and "fold 1 epoch 3/3" in resumed.output

    whole = tmp_path / "whole"
    finetune(FinetuneConfig(output=str(whole), **base))
    assert (pd.read_csv(run / "folds.csv")["fold"] == pd.read_csv(whole / "folds.csv")["fold"]).all()
    a, b = pd.read_csv(run / "oof.csv"), pd.read_csv(whole / "oof.csv")
    assert np.allclose(a[["green", "red"]], b[["green", "red"]], atol=1e-5)  # the resumed fold continued exactly


def test_early_stopping_never_reads_validation_rows(tmp_path, coloured):
    images, labels = coloured
    seen = []
    run = tmp_path / "run"
    config = FinetuneConfig(inputs=str(images), labels=str(labels), output=str(run), backbone="test_resnet",
                            weights="random", folds=2, epochs=2, resolution=32, batch_size=8, train_layers="1",
                            patience=5, device="cpu", cache=False)  # end to end: rows read from the files
    finetune(config, on_stop_rows=lambda fold, rows: seen.append((fold, rows.copy())))
    folds = pd.read_csv(run / "folds.csv")["fold"].to_numpy()
    assert [fold for fold, _ in seen] == [0, 0, 1, 1]  # once per epoch per fold
    for fold, rows in seen:
        assert len(rows) >= 2 and not np.any(folds[rows] == fold)  # only the fold's training part
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["finetune"]["mode"] == "end-to-end"


def test_stages_compose_to_forward_features():
    import timm

    from pipelines.finetune.model import build_network

    for name in ("test_efficientnet", "test_resnet"):
        model = timm.create_model(name, pretrained=False).eval()
        network = build_network(model, 3, 2, name, 0)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(network.upper(network.lower(x)), model(x), atol=1e-5)
            assert torch.allclose(network.lower(x), _apply(network.frozen, x))
        trained = {id(p) for g in network.param_groups(1e-3, 10, 0.01) for p in g["params"]}
        frozen = {id(p) for unit in network.frozen for p in unit.parameters()}
        assert trained and not trained & frozen
        assert all(not p.requires_grad for unit in network.frozen for p in unit.parameters())


def _apply(units, x):
    for unit in units:
        x = unit(x)
    return x


def write_clips(folder: Path) -> Path:
    import soundfile

    folder.mkdir(parents=True)
    rows = []
    rate = 16000
    t = np.arange(int(0.5 * rate)) / rate
    for i in range(8):
        freq = 300.0 if i % 2 == 0 else 2500.0
        wave = 0.3 * np.sin(2 * np.pi * (freq + 10 * i) * t).astype(np.float32)
        soundfile.write(folder / f"clip{i}.wav", wave, rate)
        rows.append((f"clip{i}", "low" if i % 2 == 0 else "high"))
    (folder / "cut.wav").write_bytes(b"RIFF\x00\x00")
    rows.append(("cut", "low"))
    labels = folder.parent / "clips.csv"
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(labels, index=False)
    return labels


def test_audio_run_end_to_end_all_layers(tmp_path):
    labels = write_clips(tmp_path / "clips")
    run = tmp_path / "run"
    result = invoke(tmp_path / "clips", "--labels", labels, "-o", run, "--backbone", "test_efficientnet",
                    "--weights", "random", "--folds", "2", "--epochs", "1", "--resolution", "32", "--batch-size", "4",
                    "--train-layers", "all", "--window", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "end-to-end" and summary["n_rows"] == 8 and summary["n_errors"] == 1
    _, meta = load_network(run / "fold-1")
    assert meta.modality == "audio" and meta.audio.window_seconds == 1.0 and meta.train_layers == "all"
    assert json.loads((run / "manifest.json").read_text())["modality"] == "audio"


@pytest.mark.parametrize("args, expected", [
    (["--train-layers", "99"], "--train-layers 99"),
    (["--train-layers", "some"], "--train-layers 'some'"),
    (["--train-layers", "0"], "--train-layers 0"),
    (["--schedule", "linear"], "--schedule 'linear'"),
    (["--task", "regression"], "finetune trains classifiers"),
])
def test_bad_options_are_one_line_errors(tmp_path, coloured, args, expected):
    images, labels = coloured
    result = invoke(images, "--labels", labels, "-o", tmp_path / "run", "--backbone", "test_efficientnet",
                    "--weights", "random", *args)
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3
    assert not (tmp_path / "run").exists()


def test_a_class_too_small_for_the_folds_is_refused(tmp_path, coloured):
    images, labels = coloured
    frame = pd.read_csv(labels)
    frame.loc[0, "label"] = "blue"  # one file only
    frame.to_csv(labels, index=False)
    result = invoke(images, "--labels", labels, "-o", tmp_path / "run", *TINY)
    assert result.exit_code == 1 and "'blue': 1" in result.output and "fewer than 2 labelled files" in result.output


def test_no_offline_weights_is_one_line_naming_the_fix(tmp_path, coloured):
    images, labels = coloured
    result = invoke(images, "--labels", labels, "-o", tmp_path / "run", "--backbone", "resnet18", "--folds", "2")
    assert result.exit_code == 1 and "no offline weights" in result.output and "--weights" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_one_row_last_batch_does_not_reach_batchnorm_alone(tmp_path, coloured):
    images, labels = coloured  # 16 rows: 2 folds -> 8 training rows -> 7 fit rows = 2 inner-split rows, 6 fit rows = a batch of 5 + 1
    result = invoke(images, "--labels", labels, "-o", tmp_path / "run", "--backbone", "test_efficientnet", "--weights",
                    "random", "--folds", "2", "--epochs", "1", "--resolution", "32", "--batch-size", "5", "--views", "1",
                    "--stop-share", "0.1")
    assert result.exit_code == 0, result.output
