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


# --------------------------------------------------------------------------- pictures that read right

def _drawn(fig):
    fig.canvas.draw()
    return fig


def _texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _legend_outside(ax) -> bool:
    """The legend's box does not overlap the data area (it sits beside or below it)."""
    legend = ax.get_legend()
    assert legend is not None
    renderer = ax.figure.canvas.get_renderer()
    box, data = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    return box.y1 <= data.y0 or box.x0 >= data.x1


def test_fold_scores_read_from_zero_with_values_and_accuracy_first(classified):
    from pipelines.train.report import fold_scores_figure, pyplot

    invoke("train-head", classified / "emb", "--labels", classified / "labels.csv", "--head", "logreg",
           "--folds", "3", "-o", classified / "run", "--quiet")
    scores = json.loads((classified / "run" / "scores.json").read_text())
    assert scores["metric"] == "logloss"  # the multiclass default the run watches ...
    fig = _drawn(fold_scores_figure("multiclass", scores["metric"], scores["folds"], scores["oof"]))
    accuracy, logloss = fig.axes
    assert accuracy.get_title().startswith("accuracy") and logloss.get_title().startswith("logloss")  # ... shown second
    for ax, name in ((accuracy, "accuracy"), (logloss, "logloss")):
        assert ax.get_ylim()[0] == 0  # a bar's height is its value
        assert ax.get_ylim()[1] >= max(fold[name] for fold in scores["folds"])
        assert _texts(ax) == [f"{fold[name]:.3f}" for fold in scores["folds"]]  # the value on every bar
        assert _legend_outside(ax) and f"{scores['oof'][name]:.4f}" in ax.get_legend().get_texts()[0].get_text()
    assert accuracy.get_ylim()[1] <= 1.1  # a share: the axis ends near 1, not at an arbitrary zoom
    pyplot().close(fig)
    png_size(classified / "run" / "fold_scores.png")


def test_pred_vs_true_keeps_the_truths_range_when_one_prediction_is_wild():
    from pipelines.train.report import pred_vs_true_figure, pyplot

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 22, size=50)
    pred = truth + rng.normal(scale=0.2, size=50)
    pred[3] = 40.0  # one wild out-of-fold prediction
    fig = _drawn(pred_vs_true_figure(truth, pred))
    (ax,) = fig.axes
    low, high = ax.get_xlim()
    assert ax.get_ylim() == (low, high) and -2 < low <= truth.min() and truth.max() <= high < 24
    identity = [line for line in ax.get_lines() if line.get_label() == "prediction = truth"]
    assert identity and tuple(identity[0].get_xdata()) == tuple(identity[0].get_ydata())
    assert any("1 beyond the truth's range" in t.get_text() for t in ax.get_legend().get_texts())
    assert _legend_outside(ax)
    pyplot().close(fig)


def test_multilabel_runs_get_per_label_average_precision_bars(tmp_path, make_embeddings, make_csv, make_separable):
    from pipelines.train.report import label_ap_figure, pyplot

    X, y = make_separable(90, n_classes=3)
    ids = [f"r{i}" for i in range(90)]
    make_embeddings(tmp_path / "emb", ids, X)
    tags = {0: "dog", 1: "dog bark", 2: "rain"}
    make_csv(tmp_path / "tags.csv", id=ids, tags=[tags[v] for v in y])
    invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "tags.csv", "--target-col", "tags", "--label-sep", " ",
           "--head", "logreg", "--folds", "3", "-o", tmp_path / "run", "--quiet")
    width, height = png_size(tmp_path / "run" / "label_ap.png")
    assert width > 200 and height > 100
    shown = json.loads(invoke("report", tmp_path / "run", "--json").stdout)
    assert set(shown["pictures"]) == {"label_ap", "fold_scores"}
    table = pd.read_csv(tmp_path / "run" / "per_class.csv", dtype={"class": str})
    fig = _drawn(label_ap_figure(table))
    (ax,) = fig.axes
    assert ax.get_xlim()[0] == 0 and len(ax.patches) == 3
    shown_values = sorted(float(text) for text in _texts(ax))
    assert shown_values == pytest.approx(sorted(table["average_precision"].round(3)), abs=1e-3)
    pyplot().close(fig)


def test_a_blend_draws_its_members_next_to_the_blend(classified):
    from pipelines.train.report import blend_figure, pyplot

    common = ["--labels", classified / "labels.csv", "--folds", "3", "--quiet"]
    invoke("train-head", classified / "emb", *common, "--head", "logreg", "-o", classified / "a")
    invoke("train-head", classified / "emb", *common, "--head", "logreg", "-p", "C=0.01", "--folds-from",
           classified / "a", "-o", classified / "b")
    invoke("blend", classified / "a", classified / "b", "-o", classified / "blend", "--quiet")
    png_size(classified / "blend" / "blend.png")
    shown = json.loads(invoke("report", classified / "blend", "--json").stdout)
    assert shown["pictures"] == {"blend": str(classified / "blend" / "blend.png")}
    scores = json.loads((classified / "blend" / "scores.json").read_text())
    members = scores["members"]
    fig = _drawn(blend_figure("multiclass", scores["metric"], [m["run"] for m in members],
                              [m["weight"] for m in members], [m["oof"] for m in members], scores["oof"]))
    accuracy = fig.axes[0]
    assert accuracy.get_title().startswith("blend vs members: accuracy")
    labels = [tick.get_text() for tick in accuracy.get_yticklabels()]
    assert labels[-1] == "blend" and all("weight" in label for label in labels[:-1])
    assert _texts(accuracy)[-1] == f"{scores['oof']['accuracy']:.3f}" and accuracy.get_xlim()[0] == 0
    pyplot().close(fig)
