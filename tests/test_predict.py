"""`olymp predict` through the CLI and the library: labels, probabilities, sample submissions,
failed ids, fingerprint refusals and raw inputs (with a fake extraction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import read_embeddings
from pipelines.core.errors import MismatchError
from pipelines.predict.predict import predict
from pipelines.predict.config import PredictConfig
from pipelines.train.train import TrainConfig, train

runner = CliRunner()
CLASSES = np.array(["cat", "dog", "owl"])
FAST = {"learning_rate": 0.2}


def predict_cli(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_embeddings, make_csv, make_separable):
    """A multiclass lgbm run on 200 rows and a 60-row test set (plus 3 failed extractions)."""
    root = tmp_path_factory.mktemp("predict")
    X, y = make_separable(260, dim=12, n_classes=3, seed=5)
    ids = [f"{i:04d}" for i in range(260)]
    train_ids, test_ids = ids[:200], ids[200:]
    make_embeddings(root / "train_emb", train_ids, X[:200])
    make_csv(root / "labels.csv", image_id=train_ids, species=CLASSES[y[:200]])
    failed = [("9001", "a.jpg", "broken"), ("9002", "b.jpg", "broken"), ("9003", "c.jpg", "empty")]
    make_embeddings(root / "test_emb", test_ids, X[200:], errors=failed)
    train(TrainConfig(embeddings=[str(root / "train_emb")], labels=str(root / "labels.csv"),
                      output=str(root / "run"), id_col="image_id", target_col="species", folds=3, head="lgbm", head_params=FAST))
    return {"root": root, "run": root / "run", "test": root / "test_emb", "test_ids": test_ids,
            "y_test": CLASSES[y[200:]], "X_test": X[200:]}


def test_labels_for_every_test_id(tmp_path, trained):
    result = predict_cli(trained["run"], trained["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    assert "3 test ids failed extraction" in flat(result.stderr)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert list(sub.columns) == ["image_id", "species"]  # the training CSV's names
    assert sorted(sub["image_id"]) == sorted(trained["test_ids"] + ["9001", "9002", "9003"])
    scored = sub.set_index("image_id").loc[trained["test_ids"], "species"]
    assert (scored.to_numpy() == trained["y_test"]).mean() > 0.8


def test_failed_extraction_ids_get_the_prior(trained):
    result = predict(PredictConfig(run_dir=str(trained["run"]), inputs=[str(trained["test"])], proba=True))
    manifest = json.loads((trained["run"] / "manifest.json").read_text())
    frame = result.frame.set_index("image_id")
    assert result.n_prior == 3 and result.n_rows == 63 and result.output is None
    for failed in ("9001", "9002", "9003"):
        np.testing.assert_allclose(frame.loc[failed, ["cat", "dog", "owl"]].to_numpy(dtype=float), manifest["prior"])
    assert any("3 test ids failed extraction" in w for w in result.warnings)


def test_proba_columns_named_by_class(tmp_path, trained):
    result = predict_cli(trained["run"], trained["test"], "-o", tmp_path / "sub.csv", "--proba")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"image_id": str})
    assert list(sub.columns) == ["image_id", "cat", "dog", "owl"]
    np.testing.assert_allclose(sub[["cat", "dog", "owl"]].sum(axis=1), 1.0, atol=1e-6)


def test_predictions_average_the_fold_models(trained):
    from pipelines.heads.lgbm import LGBMHead

    frame = predict(PredictConfig(run_dir=str(trained["run"]), inputs=[str(trained["test"])], proba=True)).frame
    models = [LGBMHead.load(trained["run"] / "models" / f"fold-{k}.txt", "multiclass", 3) for k in range(3)]
    expected = np.mean([m.predict(trained["X_test"]) for m in models], axis=0)
    got = frame.set_index("image_id").loc[trained["test_ids"], ["cat", "dog", "owl"]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_sample_submission_orders_rows_and_names_columns(tmp_path, trained, make_csv):
    order = list(reversed(trained["test_ids"][:20])) + ["9002"]
    sample = make_csv(tmp_path / "sample.csv", Id=order, Category=["cat"] * len(order))
    result = predict_cli(trained["run"], trained["test"], "-o", tmp_path / "sub.csv", "--sample-submission", sample)
    assert result.exit_code == 0, result.output
    assert "42 test ids are not in the sample submission" in flat(result.stderr)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert list(sub.columns) == ["Id", "Category"] and list(sub["Id"]) == order

    # a sample with one column per class (any order) means probabilities, in its column order
    columns = {"id": order, "owl": [0] * len(order), "cat": [0] * len(order), "dog": [0] * len(order)}
    proba_sample = make_csv(tmp_path / "proba_sample.csv", **columns)
    result = predict_cli(trained["run"], trained["test"], "-o", tmp_path / "p.csv", "--sample-submission", proba_sample)
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", "owl", "cat", "dog"] and list(sub["id"]) == order


def test_sample_submission_that_fits_no_class_layout_is_refused(tmp_path, trained, make_csv):
    sample = make_csv(tmp_path / "sample.csv", id=["0200"], a=[0], b=[0])
    result = predict_cli(trained["run"], trained["test"], "-o", tmp_path / "sub.csv", "--sample-submission", sample)
    assert result.exit_code == 1
    assert "columns (a, b) are not the run's classes (cat, dog, owl)" in flat(result.stderr)


def test_mismatched_fingerprint_is_refused_naming_both_values(tmp_path, trained, make_embeddings):
    other = make_embeddings(tmp_path / "other", trained["test_ids"], trained["X_test"], backbone="convnext_tiny")
    result = predict_cli(trained["run"], other, "-o", tmp_path / "sub.csv")
    assert result.exit_code == 1
    message = flat(result.stderr)
    assert "backbone: training 'test_resnet', test 'convnext_tiny'" in message
    assert "--backbone test_resnet" in message
    assert not (tmp_path / "sub.csv").exists()

    resized = make_embeddings(tmp_path / "resized", trained["test_ids"], trained["X_test"],
                              preprocessing={"input_size": [3, 224, 224]})
    with pytest.raises(MismatchError, match=r'preprocessing: training \{.*160.*\}, test \{"input_size": \[3, 224, 224\]\}'):
        predict(PredictConfig(run_dir=str(trained["run"]), inputs=[str(resized)]))


def test_input_count_and_run_dir_refusals(tmp_path, trained):
    result = predict_cli(trained["run"], trained["test"], trained["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 1 and "trained on 1 embedding set(s) (test_resnet) and got 2" in flat(result.stderr)
    result = predict_cli(trained["test"], trained["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 1 and "is not a train-head run" in flat(result.stderr)


def test_raw_input_is_extracted_with_the_training_backbone(tmp_path, trained, make_embeddings, monkeypatch):
    import pipelines.extract.runner as runner_module

    calls = []

    def fake_run_extraction(config, on_progress=None):
        calls.append(config)
        make_embeddings(config.output, trained["test_ids"], trained["X_test"])
        return None

    monkeypatch.setattr(runner_module, "run_extraction", fake_run_extraction)
    images = tmp_path / "test_images"
    images.mkdir()
    for name in trained["test_ids"][:3]:
        (images / f"{name}.png").write_bytes(b"not decoded by the fake extraction")
    result = predict_cli(trained["run"], images, "-o", tmp_path / "sub.csv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    (config,) = calls
    assert config.inputs == str(images) and config.backbone == "test_resnet" and config.weights == "random"
    assert config.device == "cpu"
    assert config.output.startswith(str(trained["run"] / "test_embeddings"))
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert sorted(sub["image_id"]) == sorted(trained["test_ids"])


@pytest.fixture(scope="module")
def binary_and_regression(tmp_path_factory, make_embeddings, make_csv, make_separable):
    root = tmp_path_factory.mktemp("tasks")
    X, y = make_separable(150, dim=8, n_classes=2, seed=2)
    ids = [f"s{i}" for i in range(150)]
    make_embeddings(root / "emb", ids[:120], X[:120])
    make_embeddings(root / "test", ids[120:], X[120:])
    make_csv(root / "binary.csv", id=ids[:120], label=np.array(["no", "yes"])[y[:120]])
    make_csv(root / "reg.csv", id=ids[:120], score=[f"{v:.3f}" for v in X[:120, 0] * 2])
    train(TrainConfig(embeddings=[str(root / "emb")], labels=str(root / "binary.csv"), output=str(root / "binary"),
                      folds=3, head="logreg"))
    train(TrainConfig(embeddings=[str(root / "emb")], labels=str(root / "reg.csv"), output=str(root / "reg"),
                      target_col="score", folds=3, head="lgbm", head_params=FAST))
    return root, ids[120:]


def test_binary_single_column_sample_with_proba_gets_positive_probability(tmp_path, binary_and_regression, make_csv):
    root, test_ids = binary_and_regression
    sample = make_csv(tmp_path / "sample.csv", id=test_ids, target=[0.5] * len(test_ids))
    result = predict_cli(root / "binary", root / "test", "-o", tmp_path / "sub.csv", "--sample-submission", sample, "--proba")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["id", "target"] and sub["target"].between(0, 1).all()
    labels = predict(PredictConfig(run_dir=str(root / "binary"), inputs=[str(root / "test")])).frame
    assert set(labels["label"]) <= {"no", "yes"}


def test_regression_values_and_no_proba(tmp_path, binary_and_regression):
    root, test_ids = binary_and_regression
    result = predict_cli(root / "reg", root / "test", "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["id", "score"] and len(sub) == len(test_ids)
    assert sub["score"].dtype == np.float64
    result = predict_cli(root / "reg", root / "test", "-o", tmp_path / "sub.csv", "--proba")
    assert result.exit_code == 1 and "regression run has no class probabilities; drop --proba" in flat(result.stderr)


def test_two_embedding_sets_in_training_order(tmp_path, make_embeddings, make_csv, make_separable, monkeypatch):
    X, y = make_separable(150, dim=10, n_classes=3, seed=7)
    ids = [f"t{i}" for i in range(150)]
    extra = np.random.default_rng(0).normal(size=(150, 4)).astype(np.float32)
    make_embeddings(tmp_path / "a_train", ids[:120], X[:120, :6])
    make_embeddings(tmp_path / "b_train", ids[:120], np.hstack([X[:120, 6:], extra[:120]]), backbone="second_net")
    make_embeddings(tmp_path / "a_test", ids[120:], X[120:, :6])
    make_embeddings(tmp_path / "b_test", ids[120:], np.hstack([X[120:, 6:], extra[120:]]), backbone="second_net")
    make_csv(tmp_path / "labels.csv", id=ids[:120], label=CLASSES[y[:120]])
    train(TrainConfig(embeddings=[str(tmp_path / "a_train"), str(tmp_path / "b_train")], labels=str(tmp_path / "labels.csv"),
                      output=str(tmp_path / "run"), folds=3, head="lgbm", head_params=FAST))

    result = predict_cli(tmp_path / "run", tmp_path / "a_test", tmp_path / "b_test", "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str)
    assert (sub.set_index("id").loc[ids[120:], "label"].to_numpy() == CLASSES[y[120:]]).mean() > 0.7

    swapped = predict_cli(tmp_path / "run", tmp_path / "b_test", tmp_path / "a_test", "-o", tmp_path / "bad.csv")
    assert swapped.exit_code == 1 and "backbone: training 'test_resnet', test 'second_net'" in flat(swapped.stderr)

    # one raw input is extracted once per training backbone
    import pipelines.extract.runner as runner_module

    backbones = []

    def fake_run_extraction(config, on_progress=None):
        backbones.append(config.backbone)
        source = tmp_path / ("a_test" if config.backbone == "test_resnet" else "b_test")
        emb = read_embeddings(source)
        make_embeddings(config.output, emb.ids, emb.vectors, backbone=config.backbone)

    monkeypatch.setattr(runner_module, "run_extraction", fake_run_extraction)
    listing = make_csv(tmp_path / "test.csv", id=ids[120:], path=[f"{i}.jpg" for i in ids[120:]])
    result = predict_cli(tmp_path / "run", listing, "-o", tmp_path / "raw.csv")
    assert result.exit_code == 0, result.output
    assert backbones == ["test_resnet", "second_net"]
    assert pd.read_csv(tmp_path / "raw.csv", dtype=str).equals(sub)


# --------------------------------------------------------------------------- raw-input cache, atomic output

def fake_extraction(calls, bank, make_embeddings):
    """Stands in for run_extraction: embeds each listed file as the bank row its bytes name, and
    like a resumed extract embeds nothing into an output that already has a manifest."""
    from pipelines.data.inputs import list_inputs

    def run_extraction(config, on_progress=None):
        calls.append(config.output)
        if (Path(config.output) / "_manifest.json").is_file():
            return None
        items = list_inputs(config.inputs)
        rows = [int(Path(item.path).read_text()) for item in items]
        make_embeddings(config.output, [item.id for item in items], bank[rows])
        return None

    return run_extraction


def write_test_folder(folder, names, rows):
    folder.mkdir(parents=True)
    for name, row in zip(names, rows):
        (folder / f"{name}.png").write_text(f"{row:03d}")  # same size whatever the row
    return folder


@pytest.fixture
def fake_extract(trained, make_embeddings, monkeypatch):
    import pipelines.extract.runner as runner_module

    calls = []
    monkeypatch.setattr(runner_module, "run_extraction", fake_extraction(calls, trained["X_test"], make_embeddings))
    yield calls
    import shutil

    shutil.rmtree(trained["run"] / "test_embeddings", ignore_errors=True)  # the module's run stays as it was


def test_two_test_folders_with_the_same_names_give_their_own_submissions(tmp_path, trained, fake_extract):
    names = [f"t{i}" for i in range(12)]
    y_test = trained["y_test"]
    rows_x = [i for i in range(60) if y_test[i] == "cat"][:12]
    rows_y = [i for i in range(60) if y_test[i] == "owl"][:12]
    x = write_test_folder(tmp_path / "x" / "test", names, rows_x)
    y = write_test_folder(tmp_path / "y" / "test", names, rows_y)
    assert predict_cli(trained["run"], x, "-o", tmp_path / "x.csv").exit_code == 0
    result = predict_cli(trained["run"], y, "-o", tmp_path / "y.csv")
    assert result.exit_code == 0, result.output
    sub_x = pd.read_csv(tmp_path / "x.csv", dtype=str).set_index("image_id")["species"]
    sub_y = pd.read_csv(tmp_path / "y.csv", dtype=str).set_index("image_id")["species"]
    assert (sub_x.loc[names] == "cat").mean() > 0.8 and (sub_y.loc[names] == "owl").mean() > 0.8
    assert len(set(fake_extract)) == 2  # two caches, one per content


def test_stdin_listing_of_the_same_files_reuses_its_extraction(tmp_path, trained, fake_extract):
    names = [f"s{i}" for i in range(6)]
    folder = write_test_folder(tmp_path / "test", names, range(6))
    listing = "\n".join(str(folder / f"{name}.png") for name in names) + "\n"
    first = runner.invoke(app, ["predict", str(trained["run"]), "-", "-o", str(tmp_path / "a.csv")], input=listing)
    second = runner.invoke(app, ["predict", str(trained["run"]), "-", "-o", str(tmp_path / "b.csv")], input=listing)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert len(fake_extract) == 1 and "reusing" in flat(second.output)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()

    (folder / "s0.png").write_text("059")  # other content, same size and name: extracted again
    third = runner.invoke(app, ["predict", str(trained["run"]), "-", "-o", str(tmp_path / "c.csv"), "--proba"],
                          input=listing)
    assert third.exit_code == 0, third.output
    assert len(fake_extract) == 2 and fake_extract[1] != fake_extract[0]
    proba = pd.read_csv(tmp_path / "c.csv", dtype={"image_id": str}).set_index("image_id")
    expected = predict(PredictConfig(run_dir=str(trained["run"]), inputs=[str(trained["test"])], proba=True)).frame
    np.testing.assert_allclose(proba.loc["s0", ["cat", "dog", "owl"]].to_numpy(dtype=float),
                               expected.set_index("image_id").loc["0259", ["cat", "dog", "owl"]].to_numpy(dtype=float))


def test_old_raw_input_caches_are_pruned(tmp_path, trained, fake_extract):
    from pipelines.predict.predict import KEEP_CACHES

    for n in range(KEEP_CACHES + 2):
        folder = write_test_folder(tmp_path / f"set{n}", ["a", "b"], [n, n + 1])
        assert predict_cli(trained["run"], folder, "-o", tmp_path / "sub.csv").exit_code == 0
    caches = sorted(p.name for p in (trained["run"] / "test_embeddings").iterdir() if p.is_dir() and p.name != "listings")
    assert len(caches) == KEEP_CACHES
    assert any(name.startswith(f"set{KEEP_CACHES + 1}-") for name in caches)  # the one just used stays


def test_a_failed_write_leaves_the_previous_submission(tmp_path, trained, monkeypatch):
    output = tmp_path / "submission.csv"
    assert predict_cli(trained["run"], trained["test"], "-o", output).exit_code == 0
    good = output.read_bytes()

    def dies_half_way(self, path=None, *args, **kwargs):  # a kill or a full disk in the middle of the CSV
        Path(path).write_text("image_id,species\n0200,c")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", dies_half_way)
    result = predict_cli(trained["run"], trained["test"], "-o", output, "--proba")
    assert result.exit_code != 0
    assert output.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]  # no temp file left either


# --------------------------------------------------------------------------- damaged run folders

@pytest.fixture(scope="module")
def head_runs(tmp_path_factory, trained):
    """One small run per model format: lgbm text, logreg JSON with a fitted transform, mlp safetensors."""
    root = trained["root"]
    out = tmp_path_factory.mktemp("heads")
    common = dict(embeddings=[str(root / "train_emb")], labels=str(root / "labels.csv"), id_col="image_id",
                  target_col="species", folds=2)
    train(TrainConfig(**common, output=str(out / "logreg"), head="logreg", normalize="standard"))
    train(TrainConfig(**common, output=str(out / "mlp"), head="mlp", head_params={"epochs": 2, "hidden": [8]}))
    return {"lgbm": trained["run"], "logreg": out / "logreg", "mlp": out / "mlp"}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"\x00garbage\xff" * 40)


def _edit_manifest(run, change):
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = [  # (run, what is done to its copy, words of the one-line error, drop the manifest's SHA-256s)
    ("lgbm", lambda run: _truncate(run / "models" / "fold-1.txt"), "fold-1.txt differs from what train-head wrote", False),
    ("lgbm", lambda run: _truncate(run / "models" / "fold-1.txt"), "fold-1.txt cannot be read", True),
    ("lgbm", lambda run: (run / "models" / "fold-2.txt").unlink(), "fold-2.txt is missing", False),
    ("logreg", lambda run: _garbage(run / "models" / "fold-0.json"), "fold-0.json cannot be read", True),
    ("logreg", lambda run: _garbage(run / "transforms" / "fold-1.npz"), "fold-1.npz cannot be read", True),
    ("logreg", lambda run: _garbage(run / "transforms" / "fold-1.npz"), "fold-1.npz differs", False),
    ("mlp", lambda run: _garbage(run / "models" / "fold-0.safetensors"), "fold-0.safetensors or fold-0.json cannot be read", True),
    ("mlp", lambda run: _garbage(run / "models" / "fold-1.json"), "fold-1.safetensors or fold-1.json cannot be read", True),
    ("lgbm", lambda run: (run / "manifest.json").write_text('{"kind": "head_run", "models": ['), "manifest.json is not valid JSON", False),
    ("lgbm", lambda run: _edit_manifest(run, lambda m: m["models"].__setitem__(0, "../../x.txt")), "outside the run folder", False),
    ("logreg", lambda run: _edit_manifest(run, lambda m: m["features"]["transforms"].__setitem__(0, "/etc/passwd")), "outside the run folder", False),
    ("lgbm", lambda run: _edit_manifest(run, lambda m: m.pop("models")), "has no valid 'models'", False),
]


@pytest.mark.parametrize(("kind", "damage", "expected", "unhashed"), DAMAGE)
def test_a_damaged_run_folder_is_one_line_naming_the_file(tmp_path, head_runs, trained, kind, damage, expected, unhashed):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(head_runs[kind], run)
    if unhashed:  # a run from before the manifest recorded its files' SHA-256: the readers' own errors
        _edit_manifest(run, lambda m: m.pop("files_sha256", None))
    damage(run)
    result = predict_cli(run, trained["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and expected in flat(result.stderr), result.stderr
    assert "Traceback" not in result.output and len(flat(result.stderr.split("error:")[-1])) > 0
    assert not (tmp_path / "sub.csv").exists()


def test_the_same_files_piped_after_their_folder_reuse_its_extraction(tmp_path, trained, fake_extract):
    folder = write_test_folder(tmp_path / "test", ["a", "b", "c"], [3, 4, 5])
    assert predict_cli(trained["run"], folder, "-o", tmp_path / "a.csv").exit_code == 0
    listing = "\n".join(str(p) for p in sorted(folder.iterdir()))
    piped = runner.invoke(app, ["predict", str(trained["run"]), "-", "-o", str(tmp_path / "b.csv")], input=listing)
    assert piped.exit_code == 0, piped.output
    assert len(fake_extract) == 1
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_a_run_from_before_precision_was_recorded_still_predicts(tmp_path, trained, make_embeddings):
    """Older runs stored a fingerprint without precision: test embeddings of any precision match it,
    with a warning saying which one was used; a run that records it still refuses another one."""
    import shutil

    def run_copy(name, precision):
        copy = tmp_path / name
        shutil.copytree(trained["run"], copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        for entry in manifest["embeddings"]:
            entry["fingerprint"].pop("precision", None)
            (entry["fingerprint"].get("compute") or {}).pop("precision", None)
            if precision:
                entry["fingerprint"]["precision"] = precision
        (copy / "manifest.json").write_text(json.dumps(manifest))
        return copy

    old, recorded = run_copy("old-run", None), run_copy("fp32-run", "fp32")
    bf16 = make_embeddings(tmp_path / "bf16", trained["test_ids"], trained["X_test"], precision="bf16")

    result = predict_cli(old, bf16, "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    assert "does not record precision" in flat(result.stderr)
    assert len(pd.read_csv(tmp_path / "sub.csv")) == len(trained["test_ids"])

    refused = predict_cli(recorded, bf16, "-o", tmp_path / "sub2.csv")
    assert refused.exit_code == 1 and "precision" in flat(refused.stderr)
