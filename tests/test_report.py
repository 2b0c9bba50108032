"""Reports: train-head's pictures and per-class table, `olymp report`, `olymp inspect`."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def invoke(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a complete, readable PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def classified(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(80, n_classes=4)
    ids = [f"r{i:02d}" for i in range(80)]
    make_embeddings(tmp_path / "emb", ids, X)
    make_csv(tmp_path / "labels.csv", id=ids, label=[f"class {v}" for v in y])
    return tmp_path


def test_train_head_writes_the_classification_reports(classified):
    invoke("train-head", classified / "emb", "--labels", classified / "labels.csv", "--head", "logreg",
           "--folds", "3", "-o", classified / "run", "--quiet")
    run = classified / "run"
    table = pd.read_csv(run / "per_class.csv", dtype={"class": str})
    assert table["class"].tolist() == ["class 0", "class 1", "class 2", "class 3"]
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert table["support"].sum() == 80 and table["f1"].between(0, 1).all()
    # recall of a class = its diagonal share of the out-of-fold argmax
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    truth = pd.read_csv(classified / "labels.csv", dtype=str).set_index("id").loc[oof["id"], "label"].to_numpy()
    predicted = oof[table["class"].tolist()].to_numpy().argmax(axis=1)
    recall0 = np.mean(predicted[truth == "class 0"] == 0)
    assert table.loc[0, "recall"] == pytest.approx(recall0)
    for name in ("confusion.png", "fold_scores.png"):
        width, height = png_size(run / name)
        assert width > 200 and height > 200
    assert not (run / "pred_vs_true.png").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["reports"] == {"per_class": "per_class.csv", "confusion": "confusion.png", "fold_scores": "fold_scores.png"}


def test_regression_gets_a_scatter_and_no_class_table(tmp_path, make_embeddings, make_csv):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    y = X[:, 0] * 3 + rng.normal(scale=0.1, size=60)
    ids = [f"r{i}" for i in range(60)]
    make_embeddings(tmp_path / "emb", ids, X)
    make_csv(tmp_path / "labels.csv", id=ids, label=[f"{v:.4f}" for v in y])
    invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "--folds", "3",
           "-o", tmp_path / "run", "--quiet")
    png_size(tmp_path / "run" / "pred_vs_true.png")
    png_size(tmp_path / "run" / "fold_scores.png")
    assert not (tmp_path / "run" / "per_class.csv").exists()
    shown = json.loads(invoke("report", tmp_path / "run", "--json").stdout)
    assert shown["per_class"] is None and set(shown["pictures"]) == {"pred_vs_true", "fold_scores"}


def test_overwrite_removes_the_old_reports(classified, make_csv):
    invoke("train-head", classified / "emb", "--labels", classified / "labels.csv", "--head", "logreg",
           "--folds", "2", "-o", classified / "run", "--quiet")
    rows = pd.read_csv(classified / "labels.csv", dtype=str)
    make_csv(classified / "numbers.csv", id=rows["id"], label=[str(i * 0.5) for i in range(len(rows))])
    invoke("train-head", classified / "emb", "--labels", classified / "numbers.csv", "--head", "logreg",
           "--folds", "2", "-o", classified / "run", "--overwrite", "--quiet")
    assert not (classified / "run" / "confusion.png").exists() and not (classified / "run" / "per_class.csv").exists()


def test_report_prints_the_tables_again_and_the_picture_paths(classified):
    invoke("train-head", classified / "emb", "--labels", classified / "labels.csv", "--head", "logreg",
           "--folds", "3", "-o", classified / "run", "--quiet")
    shown = invoke("report", classified / "run")
    assert "per class" in shown.stdout and "class 3" in shown.stdout
    assert str(classified / "run" / "confusion.png") in shown.stdout
    data = json.loads(invoke("report", classified / "run", "--json").stdout)
    scores = json.loads((classified / "run" / "scores.json").read_text())
    assert data["oof"] == scores["oof"] and len(data["folds"]) == 3
    assert [row["class"] for row in data["per_class"]] == ["class 0", "class 1", "class 2", "class 3"]
    assert set(data["pictures"]) == {"confusion", "fold_scores"}
    assert "not a train-head run" in invoke("report", classified / "emb", code=1).stderr


def test_inspect_scores_separable_embeddings_and_saves_the_projection(classified):
    result = invoke("inspect", classified / "emb", "--labels", classified / "labels.csv", "-o",
                    classified / "proj.png", "--method", "pca", "--json")
    data = json.loads(result.stdout)
    assert data["score_name"] == "knn_accuracy" and data["score"] > 0.8
    assert data["baseline"] == pytest.approx(0.25, abs=0.05) and data["method"] == "pca" and data["n_rows"] == 80
    png_size(classified / "proj.png")
    text = invoke("inspect", classified / "emb", "--labels", classified / "labels.csv").stdout
    assert "knn_accuracy" in text and "majority class" in text


def test_inspect_tells_noise_from_signal(tmp_path, make_embeddings, make_csv):
    rng = np.random.default_rng(1)
    ids = [f"r{i}" for i in range(90)]
    make_embeddings(tmp_path / "emb", ids, rng.normal(size=(90, 16)))
    make_csv(tmp_path / "labels.csv", id=ids, label=[f"c{i % 3}" for i in range(90)])
    data = json.loads(invoke("inspect", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--json").stdout)
    assert data["score"] < 0.55  # random vectors: near the 1/3 chance level
    if importlib.util.find_spec("umap") is None:
        refused = invoke("inspect", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "-o", tmp_path / "p.png",
                         "--method", "umap", code=1)
        assert "--method pca" in refused.stderr
