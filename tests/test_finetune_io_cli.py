"""A finetune run through predict, report, blend and extract (CLI): raw test files through every
fold's network, bad files get the prior, --tta hflip only where allowed, blending with a
train-head run on the same folds, extract with a fold's network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from pipelines.backbones.finetuned import NetworkMeta, load_network, network_fingerprint, save_network
from tests.test_end_to_end import write_colour_images

runner = CliRunner()
TINY = ["--workers", "0", "--device", "cpu"]
DATA_CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
               "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


def build_finetune_run(head_run: Path, run_dir: Path, hflip: bool = True) -> Path:
    """A finetune run directory as the contract describes it, on the head run's folds: one
    test_efficientnet network per fold (seeded, different per fold), the head run's folds.csv,
    its oof.csv nudged, its scores.json; manifest kind finetune_run with networks."""
    run_dir.mkdir(parents=True)
    manifest = json.loads((head_run / "manifest.json").read_text())
    for name in ("folds.csv", "scores.json"):
        shutil.copy(head_run / name, run_dir / name)
    oof = pd.read_csv(head_run / "oof.csv", dtype={"id": str})
    classes = manifest["classes"]
    oof[classes] = (oof[classes] * 0.9 + 0.1 / len(classes)).to_numpy()
    oof.to_csv(run_dir / "oof.csv", index=False)
    networks = []
    for fold in range(int(manifest["folds"])):
        torch.manual_seed(fold)
        model = timm.create_model("test_efficientnet", pretrained=False, num_classes=len(classes)).eval()
        meta = NetworkMeta(backbone="test_efficientnet", timm_name="test_efficientnet", num_classes=len(classes),
                           classes=classes, task=manifest["task"], modality="image", data_config=dict(DATA_CONFIG),
                           audio=None, hflip_tta_ok=hflip, fold=fold, best_epoch=1, train_layers="all")
        save_network(run_dir / f"fold-{fold}", model, meta)
        networks.append(f"fold-{fold}")
    for key in ("models", "model_folds", "head", "embeddings", "n_features", "features", "files_sha256", "reports"):
        manifest.pop(key, None)
    manifest.update(kind="finetune_run", networks=networks, modality="image",
                    finetune={"backbone": "test_efficientnet", "epochs": 1, "train_layers": "all", "hflip": hflip})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir


FINETUNE = ["--backbone", "test_efficientnet", "--weights", "random", "--epochs", "2", "--resolution", "32",
            "--batch-size", "8", "--views", "1", "--patience", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A train-head run and a real 2-fold `olymp finetune` run (with --hflip) on its folds."""
    root = tmp_path_factory.mktemp("ftio")
    labels = write_colour_images(root / "train", 30, seed=0)
    write_colour_images(root / "test", 6, seed=1)
    (root / "test" / "broken.png").write_bytes(b"not an image")
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(root / "labels.csv", index=False)
    ok("extract", root / "train", "-o", root / "emb", "--backbone", "test_resnet", "--weights", "random", *TINY)
    ok("train-head", root / "emb", "--labels", root / "labels.csv", "--head", "logreg", "--folds", "2",
       "-o", root / "head")
    ok("finetune", root / "train", "--labels", root / "labels.csv", "--folds-from", root / "head", "--hflip",
       *FINETUNE, "-o", root / "ft")
    return root


def expected_probabilities(run_dir: Path, image_paths: list[Path], hflip: bool = False) -> np.ndarray:
    """Every fold network on the images, straight through timm: the mean of the softmaxes."""
    from pipelines.backbones.finetuned import eval_transform

    total = 0
    folds = sorted(p for p in run_dir.glob("fold-*"))
    for folder in folds:
        model, meta = load_network(folder)
        batch = torch.stack([eval_transform(meta)(Image.open(p).convert("RGB")) for p in image_paths])
        with torch.inference_mode():
            logits = model(batch)
            if hflip:
                logits = (logits + model(batch.flip(-1))) / 2
        total = total + logits.softmax(dim=1).numpy()
    return total / len(folds)


def test_predict_runs_every_fold_network_on_raw_files(runs, tmp_path):
    result = ok("predict", runs / "ft", runs / "test", "-o", tmp_path / "sub.csv", "--proba", *TINY[2:])
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", "c0", "c1", "c2"]
    assert sorted(sub["id"]) == sorted([f"im{i:03d}" for i in range(6)] + ["broken"])
    good = sub[sub["id"] != "broken"].sort_values("id")
    images = [runs / "test" / f"{i}.png" for i in good["id"]]
    assert np.allclose(good[["c0", "c1", "c2"]].to_numpy(), expected_probabilities(runs / "ft", images), atol=2e-3)  # bf16 autocast where the CPU has it
    prior = json.loads((runs / "ft" / "manifest.json").read_text())["prior"]
    assert np.allclose(sub[sub["id"] == "broken"][["c0", "c1", "c2"]].to_numpy()[0], prior)
    assert "1 test files could not be read" in flat(result.output)
    assert "mean of 2 fold models" in flat(result.output)

    labels = ok("predict", runs / "ft", runs / "test", "-o", tmp_path / "labels.csv", *TINY[2:])
    assert "reusing" in flat(labels.output)  # the networks' extractions are cached by content
    assert list(pd.read_csv(tmp_path / "labels.csv").columns) == ["id", "label"]


def test_predict_tta_hflip_averages_the_mirrored_view(runs, tmp_path):
    ok("predict", runs / "ft", runs / "test", "-o", tmp_path / "sub.csv", "--proba", "--tta", "hflip", *TINY[2:])
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    good = sub[sub["id"] != "broken"].sort_values("id")
    images = [runs / "test" / f"{i}.png" for i in good["id"]]
    expected = expected_probabilities(runs / "ft", images, hflip=True)
    # extract averages the two views' pre-logits; the classifier is linear, so the logits are averaged too
    assert np.allclose(good[["c0", "c1", "c2"]].to_numpy(), expected, atol=2e-3)


def test_predict_refusals_are_one_line(runs, tmp_path):
    build_finetune_run(runs / "head", tmp_path / "noflip", hflip=False)
    cases = [
        ((tmp_path / "noflip", runs / "test", "--tta", "hflip"), "not flip-invariant"),
        ((runs / "ft", runs / "emb"), "predicts from the raw test files"),
        ((runs / "head", runs / "test", "--tta", "hflip"), "--tta hflip is for fine-tuned runs"),
    ]
    for args, message in cases:
        result = invoke("predict", *args, "-o", tmp_path / "x.csv", *TINY[2:])
        assert result.exit_code == 1, result.output
        assert message in flat(result.output) and "Traceback" not in result.output
    damaged = tmp_path / "damaged"
    shutil.copytree(runs / "ft", damaged, ignore=shutil.ignore_patterns("test_embeddings"))
    weights = damaged / "fold-1" / "network.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = invoke("predict", damaged, runs / "test", "-o", tmp_path / "x.csv", *TINY[2:])
    assert result.exit_code == 1 and "differs from what olymp finetune wrote" in flat(result.output)
    assert "fold-1" in flat(result.output)


def test_report_shows_a_finetune_run(runs):
    result = ok("report", runs / "ft", "--json")
    report = json.loads(result.stdout)
    assert report["head"] == "finetune:test_efficientnet"
    assert report["oof"] == json.loads((runs / "ft" / "scores.json").read_text())["oof"]
    assert report["metric"] and len(report["folds"]) == 2


def test_blend_with_a_head_run_on_the_same_folds(runs, tmp_path):
    ok("blend", runs / "head", runs / "ft", "-o", tmp_path / "blend")
    members = json.loads((tmp_path / "blend" / "manifest.json").read_text())["members"]
    assert [m["head"] for m in members] == ["logreg", "finetune:test_efficientnet"]
    result = ok("predict", tmp_path / "blend", runs / "test", "-o", tmp_path / "sub.csv", *TINY[2:])
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 7

    other = tmp_path / "other-folds"
    ok("train-head", runs / "emb", "--labels", runs / "labels.csv", "--head", "logreg", "--folds", "3", "-o", tmp_path / "head3")
    build_finetune_run(tmp_path / "head3", other)
    refused = invoke("blend", runs / "head", other, "-o", tmp_path / "blend2")
    assert refused.exit_code == 1 and "other folds" in flat(refused.output)


def test_extract_with_a_fold_network_records_its_fingerprint(runs, tmp_path):
    folder = tmp_path / "fold-0"
    shutil.copytree(runs / "ft" / "fold-0", folder)
    ok("extract", runs / "test", "-o", tmp_path / "emb", "--backbone", folder, *TINY)
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["weights_sha256"] == network_fingerprint(folder)
    assert manifest["backbone"] == str(folder) and "fine-tuned network" in manifest["weights_source"]
    assert manifest["counts"] == {"inputs": 7, "embedded": 6, "errors": 1}
    model, _ = load_network(folder)
    from pipelines.data.embeddings import read_embeddings
    from pipelines.backbones.finetuned import eval_transform, pre_logits, read_meta

    embedded = read_embeddings(tmp_path / "emb")
    batch = torch.stack([eval_transform(read_meta(folder))(Image.open(runs / "test" / f"{i}.png").convert("RGB"))
                         for i in embedded.ids])
    with torch.inference_mode():
        assert np.allclose(embedded.vectors, pre_logits(model, batch).numpy(), atol=0.05, rtol=0.02)  # bf16
    # resumed (the broken file is retried once; alone, it is 100% of the work: allow that)
    again = ok("extract", runs / "test", "-o", tmp_path / "emb", "--backbone", folder, "--max-error-rate", "1", *TINY)
    assert "6 inputs already done" in flat(again.output)
    # the fold retrained in place (other weights): its old embeddings are refused, naming the weights
    _, meta = load_network(folder)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_network(folder, model, meta)
    refused = invoke("extract", runs / "test", "-o", tmp_path / "emb", "--backbone", folder, *TINY)
    assert refused.exit_code == 1 and "weights_sha256" in flat(refused.output), refused.output


def test_audio_run_predicts_raw_clips_through_the_front_end_it_trained_on(tmp_path):
    """A real audio finetune run; predict on raw clips equals the fold networks fed the log-mel
    images of pipelines/finetune/frontend.py directly (one window per clip)."""
    import soundfile

    from pipelines.finetune.frontend import audio_frontend

    rate = 32000
    t = np.arange(int(0.6 * rate)) / rate
    clips, rows = tmp_path / "clips", []
    clips.mkdir()
    for i in range(10):
        freq = 300.0 if i % 2 == 0 else 2500.0
        soundfile.write(clips / f"clip{i}.wav", (0.3 * np.sin(2 * np.pi * (freq + 10 * i) * t)).astype(np.float32), rate)
        rows.append((f"clip{i}", "low" if i % 2 == 0 else "high"))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(tmp_path / "clips.csv", index=False)
    test = tmp_path / "test"
    test.mkdir()
    for i, freq in enumerate((320.0, 2600.0, 900.0)):
        soundfile.write(test / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    (test / "cut.wav").write_bytes(b"RIFF\x00\x00")
    run = tmp_path / "run"
    ok("finetune", clips, "--labels", tmp_path / "clips.csv", "-o", run, "--backbone", "test_efficientnet",
       "--weights", "random", "--folds", "2", "--epochs", "1", "--resolution", "32", "--batch-size", "4",
       "--train-layers", "all", "--window", "1", "--device", "cpu")
    refused = invoke("predict", run, test, "-o", tmp_path / "x.csv", "--tta", "hflip", "--device", "cpu")
    assert refused.exit_code == 1 and "audio networks have no mirror view" in flat(refused.output)

    ok("predict", run, test, "-o", tmp_path / "sub.csv", "--proba", "--device", "cpu")
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str}).set_index("id")
    classes = json.loads((run / "manifest.json").read_text())["classes"]
    assert list(sub.columns) == classes and len(sub) == 4
    assert np.allclose(sub.loc["cut", classes].to_numpy(dtype=float),
                       json.loads((run / "manifest.json").read_text())["prior"])
    waves = []
    for i in range(3):
        wave, _ = soundfile.read(test / f"t{i}.wav", dtype="float32")
        padded = np.zeros(int(0.75 * rate), np.float32)  # the reader pads a short clip to a multiple of 0.25 s
        padded[: len(wave)] = wave
        waves.append(padded)
    total = 0
    for fold in ("fold-0", "fold-1"):
        model, meta = load_network(run / fold)
        with torch.inference_mode():
            total = total + model(audio_frontend(meta, model).images(torch.from_numpy(np.stack(waves)))).softmax(1).numpy()
    expected = total / 2
    got = sub.loc[[f"t{i}" for i in range(3)], classes].to_numpy(dtype=float)
    assert np.allclose(got, expected, atol=5e-3), (got, expected)  # bf16 autocast where the CPU has it


def test_audio_oof_averages_windows_as_predict_does(tmp_path):
    """Clips of several windows: each OOF row is what the fold's network gives that clip through
    extract + its classifier (logits of the clip's mean pre-logits), so OOF scores describe the
    predictions a submission gets."""
    import soundfile

    from pipelines.backbones.finetuned import classify
    from pipelines.data.embeddings import read_embeddings

    rate = 16000
    rng = np.random.default_rng(0)
    clips, rows = tmp_path / "clips", []
    clips.mkdir()
    for i in range(8):
        t = np.arange(int(3.0 * rate)) / rate
        freq = 300.0 if i % 2 == 0 else 2500.0
        wave = 0.3 * np.sin(2 * np.pi * freq * t) * (t > 1.0)  # a silent first window: windows differ
        soundfile.write(clips / f"clip{i}.wav", (wave + 0.01 * rng.normal(size=len(t))).astype(np.float32), rate)
        rows.append((f"clip{i}", "low" if i % 2 == 0 else "high"))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(tmp_path / "clips.csv", index=False)
    run = tmp_path / "run"
    ok("finetune", clips, "--labels", tmp_path / "clips.csv", "-o", run, "--backbone", "test_efficientnet",
       "--weights", "random", "--folds", "2", "--epochs", "4", "--lr", "0.01", "--resolution", "32", "--batch-size", "4",
       "--train-layers", "all", "--window", "1", "--device", "cpu")
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    classes = json.loads((run / "manifest.json").read_text())["classes"]
    ok("extract", clips, "-o", tmp_path / "emb", "--backbone", run / "fold-0", "--modality", "audio", *TINY)  # its 1 s windows
    embedded = read_embeddings(tmp_path / "emb")
    model, _ = load_network(run / "fold-0")
    expected = pd.DataFrame(classify(model, embedded.vectors), columns=classes, index=[str(i) for i in embedded.ids])
    mine = oof[oof["fold"] == 0]
    got = mine[classes].to_numpy(dtype=float)
    assert np.allclose(got, expected.loc[mine["id"], classes].to_numpy(), atol=5e-3), (got, expected)
