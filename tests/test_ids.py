"""Ids that match real labels files: ImageFolder layouts keyed by stem, file name or relative path,
classes from folder names, ambiguous stems, multilabel rows without labels, id,label samples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from pipelines.data import metrics

runner = CliRunner()
CLASSES = ("cat", "dog", "fox")
TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
FAST = ["--head", "logreg", "--folds", "3"]


def invoke(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def colour_image(path, label: int, rng) -> None:
    pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
    pixels[..., label] += 180
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """train/<class>/imNNN.{png,jpg} (ImageFolder), a flat test/ folder, both extracted once.
    Returns (root, {relative path with extension: class}, {test file name: class})."""
    root = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(0)
    train, test = {}, {}
    for index in range(30):
        label = index % 3
        name = f"{CLASSES[label]}/im{index:03d}{'.png' if index % 2 else '.jpg'}"
        (root / "train" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        colour_image(root / "train" / name, label, rng)
        train[name] = CLASSES[label]
    (root / "test").mkdir()
    for index in range(9):
        name = f"t{index:03d}{'.png' if index % 2 else '.jpg'}"
        colour_image(root / "test" / name, index % 3, rng)
        test[name] = CLASSES[index % 3]
    invoke("extract", root / "train", "-o", root / "emb", *TINY)
    invoke("extract", root / "test", "-o", root / "test_emb", *TINY)
    return root, train, test


def spelled(name: str, form: str) -> str:
    """A relative path with extension ('cat/im001.png') in one of the id forms."""
    base = name if form.startswith("path") else name.split("/")[-1]
    return base if form.endswith("+ext") else base.rsplit(".", 1)[0]


@pytest.mark.parametrize("form", ["stem", "stem+ext", "path", "path+ext"])
def test_labels_keyed_by_each_form_train_and_predict(folders, tmp_path, form):
    root, train, test = folders
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [spelled(n, form) for n in train], "label": list(train.values())}).to_csv(labels, index=False)
    invoke("train-head", root / "emb", "--labels", labels, "-o", tmp_path / "run", *FAST)

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["labels"]["id_form"] == form
    assert manifest["n_rows"] == len(train)
    oof = pd.read_csv(tmp_path / "run" / "oof.csv", dtype=str)
    assert sorted(oof["id"]) == sorted(spelled(n, form) for n in train)  # the labels' own ids

    invoke("predict", tmp_path / "run", root / "test_emb", "-o", tmp_path / "sub.csv")
    submission = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert sorted(submission["id"]) == sorted(spelled(n, form) for n in test)  # in the labels' form
    truth = {spelled(n, form): label for n, label in test.items()}
    assert np.mean([truth[i] == label for i, label in zip(submission["id"], submission["label"])]) >= 0.8


def test_labels_from_folders_end_to_end(folders, tmp_path):
    root, train, test = folders
    result = invoke("train-head", root / "emb", "--labels-from-folders", "-o", tmp_path / "run", *FAST, "--json")
    summary = json.loads(result.stdout)
    assert summary["classes"] == list(CLASSES) and summary["n_rows"] == len(train)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["labels"]["from_folders"] is True and manifest["labels"]["path"] is None

    # the raw test folder, extracted by predict with the training backbone
    invoke("predict", tmp_path / "run", root / "test", "-o", tmp_path / "sub.csv", "--device", "cpu")
    submission = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    truth = {n.rsplit(".", 1)[0]: label for n, label in test.items()}
    assert sorted(submission["id"]) == sorted(truth)
    assert np.mean([truth[i] == label for i, label in zip(submission["id"], submission["label"])]) >= 0.8


def test_labels_from_folders_refuses_files_outside_class_folders(make_embeddings, tmp_path):
    emb = make_embeddings(tmp_path / "emb", ["cat/a", "b"], np.eye(2))
    result = runner.invoke(app, ["train-head", str(emb), "--labels-from-folders", "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "1 files of" in result.stderr and "not in a class folder (e.g. 'b')" in result.stderr


def test_run_config_takes_labels_from_folders(folders, tmp_path):
    root, train, _ = folders
    config = tmp_path / "run.toml"
    config.write_text(
        f'[data]\ntrain = "{root / "train"}"\noutput = "{tmp_path / "out"}"\n'
        '[extract]\nbackbone = "test_resnet"\nweights = "random"\nworkers = 0\ndevice = "cpu"\n'
        '[head]\nname = "logreg"\nfolds = 3\nlabels_from_folders = true\n'
    )
    invoke("run", config)
    manifest = json.loads((tmp_path / "out" / "run" / "manifest.json").read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["n_rows"] == len(train)


def test_ambiguous_stems_are_refused_with_counts(make_embeddings, make_csv, tmp_path):
    ids = ["a/x1", "b/x1", "a/x2", "b/x2", "a/x3", "b/y3"]
    emb = make_embeddings(tmp_path / "emb", ids, np.random.default_rng(0).normal(size=(6, 4)))
    labels = make_csv(tmp_path / "labels.csv", id=["x1", "x2", "x3", "y3"], label=["p", "q", "p", "q"])
    result = runner.invoke(app, ["train-head", str(emb), "--labels", str(labels), "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    message = result.stderr
    assert "keyed by the bare file stem" in message and "2 of its ids match 4 files in different folders" in message
    assert "'a/x1'" in message and "'b/x1'" in message


def test_mismatch_names_one_id_of_each_side_and_the_forms_tried(make_embeddings, make_csv, tmp_path):
    emb = make_embeddings(tmp_path / "emb", ["dogs/001", "cats/002"], np.eye(2))
    labels = make_csv(tmp_path / "labels.csv", id=["IMG_1.jpg", "IMG_2.jpg"], label=["a", "b"])
    result = runner.invoke(app, ["train-head", str(emb), "--labels", str(labels), "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "'IMG_1.jpg'" in message and "'dogs/001'" in message
    assert "relative path and the bare stem, each with and without extension" in message


def test_sample_submission_id_label_with_proba(folders, tmp_path):
    root, train, test = folders
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [spelled(n, "stem") for n in train], "label": list(train.values())}).to_csv(labels, index=False)
    invoke("train-head", root / "emb", "--labels", labels, "-o", tmp_path / "run", *FAST)
    # an ordinary Kaggle sample: file names with extension, one label column, its own row order
    names = sorted(test, reverse=True)
    sample = tmp_path / "sample_submission.csv"
    pd.DataFrame({"image": names, "label": ["cat"] * len(names)}).to_csv(sample, index=False)
    invoke("predict", tmp_path / "run", root / "test_emb", "--proba", "--sample-submission", sample, "-o", tmp_path / "sub.csv")
    submission = pd.read_csv(tmp_path / "sub.csv", dtype={"image": str})
    assert list(submission.columns) == ["image", *CLASSES]
    assert list(submission["image"]) == names  # the sample's ids, in its order
    np.testing.assert_allclose(submission[list(CLASSES)].sum(axis=1), 1.0, rtol=1e-5)
    invoke("predict", tmp_path / "run", root / "test_emb", "--sample-submission", sample, "-o", tmp_path / "labels.csv")
    decided = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    assert list(decided["image"]) == names and set(decided["label"]) <= set(CLASSES)


def _multilabel_data(make_embeddings, tmp_path, n=60):
    """Two labels, each read off one feature; a third of the rows have neither."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6))
    y = np.stack([x[:, 0] > 0.4, x[:, 1] > 0.4], axis=1)
    ids = [f"r{i:03d}" for i in range(n)]
    emb = make_embeddings(tmp_path / "emb", ids, x)
    return ids, y, emb


def test_multilabel_rows_without_labels_are_kept_predicted_empty_and_scored(make_embeddings, tmp_path):
    ids, y, emb = _multilabel_data(make_embeddings, tmp_path)
    n_empty = int((y.sum(axis=1) == 0).sum())
    assert n_empty > 10
    for form in ("sep", "columns"):  # both input forms keep the rows with no labels
        labels, run = tmp_path / f"labels-{form}.csv", tmp_path / f"run-{form}"
        if form == "sep":
            tags = [" ".join(name for name, on in zip(("red", "blue"), row) if on) for row in y]
            pd.DataFrame({"id": ids, "tags": tags}).to_csv(labels, index=False)
            options = ["--target-col", "tags", "--label-sep", " "]
        else:
            pd.DataFrame({"id": ids, "red": y[:, 0].astype(int), "blue": y[:, 1].astype(int)}).to_csv(labels, index=False)
            options = ["--target-col", "red,blue"]
        summary = json.loads(invoke("train-head", emb, "--labels", labels, *options, "-o", run, *FAST, "--json").stdout)
        assert summary["n_rows"] == len(ids)  # no row left out
        assert f"{n_empty} rows without any" in summary["task_reason"]
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["at_least_one_label"] is False

        oof = pd.read_csv(run / "oof.csv")
        order = [ids.index(i) for i in oof["id"]]
        columns = {"red": 0, "blue": 1}
        truth = y[order][:, [columns[c] for c in manifest["classes"]]].astype(int)
        assert summary["oof"]["lwlrap"] == pytest.approx(metrics.lwlrap(truth, oof[manifest["classes"]].to_numpy()))

        invoke("predict", run, emb, "-o", tmp_path / "sub.csv")
        submission = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
        if form == "sep":
            assert (submission["tags"] == "").sum() > 0  # empty label sets are predicted
        else:
            assert (submission[["red", "blue"]].astype(int).sum(axis=1) == 0).sum() > 0

    # lwlrap follows the standard (Freesound) definition: rows without a positive label add no
    # (row, label) pair; sklearn's LRAP weighted by positives per row is the same number.
    from sklearn.metrics import label_ranking_average_precision_score

    rng = np.random.default_rng(1)
    truth = (rng.random((40, 4)) > 0.6).astype(int)
    truth[:10] = 0  # all-negative rows
    scores = rng.random((40, 4))
    weights = truth.sum(axis=1)
    kept = weights > 0
    expected = label_ranking_average_precision_score(truth[kept], scores[kept], sample_weight=weights[kept])
    assert metrics.lwlrap(truth, scores) == pytest.approx(expected)
    # F1: all-negative rows predicted empty cost nothing; a label predicted on them is a false positive
    right = np.where(truth > 0, 0.9, 0.1)
    assert metrics.score("multilabel", truth, right, ["f1_micro", "map"]) == {"f1_micro": 1.0, "map": 1.0}
    right[:10, 0] = 0.95
    assert metrics.score("multilabel", truth, right, ["f1_micro"])["f1_micro"] < 1.0


def test_recommend_trial_with_labels_from_folders(folders, monkeypatch):
    import pipelines.backbones.catalog
    from tests.test_recommend import TRIAL_CATALOG

    monkeypatch.setattr(pipelines.backbones.catalog, "load_catalog", lambda path=None: list(TRIAL_CATALOG))
    root, train, _ = folders
    result = invoke("recommend", root / "train", "--labels-from-folders", "--trial-weights", "random", "--trial-top", "1",
                    "--trial-size", "24", "--device", "cpu", "--json")
    out = json.loads(result.stdout)
    assert out["trial"]["labels"] == "folders" and out["trial"]["sample"] == 24
    assert out["candidates"][0]["trial_score"] is not None
