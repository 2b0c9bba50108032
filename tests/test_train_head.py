"""`olymp train-head` through the CLI and the library: tasks, folds, run dir, heads, refusals."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import fingerprint, load_manifest
from pipelines.core.errors import ConfigError, InputError
from pipelines.heads import get_head
from pipelines.data.tasks import infer_task
from pipelines.train.train import TrainConfig, train

runner = CliRunner()
FAST = ["--head", "lgbm", "--folds", "3", "--param", "learning_rate=0.2"]  # fewer folds and trees: same code paths
FAST_LOGREG = ["--folds", "3"]
CLASSES = np.array(["cat", "dog", "owl"])


def train_cli(*args):
    return runner.invoke(app, ["train-head", *map(str, args)])


@pytest.fixture
def multiclass(tmp_path, make_embeddings, make_csv, make_separable):
    """180 rows, string labels, ids with leading zeros ("007" must stay "007")."""
    X, y = make_separable(180, dim=12, n_classes=3)
    ids = [f"{i:03d}" for i in range(180)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=CLASSES[y])
    return emb, labels, ids, y


def read_run(run_dir):
    return (
        json.loads((run_dir / "manifest.json").read_text()),
        pd.read_csv(run_dir / "folds.csv", dtype={"id": str}),
        pd.read_csv(run_dir / "oof.csv", dtype={"id": str}),
        json.loads((run_dir / "scores.json").read_text()),
    )


def assert_no_pickle(run_dir):
    for path in run_dir.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib", ".pt"}, path
        if path.is_file():
            assert path.read_bytes()[:1] != b"\x80", f"{path} looks like a pickle"


def test_multiclass_string_labels_end_to_end(tmp_path, multiclass):
    emb, labels, ids, y = multiclass
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *FAST)
    assert result.exit_code == 0, result.output
    assert "multiclass: 3 distinct string labels" in result.output
    assert "mean ± std" in result.output

    run_dir = tmp_path / "run"
    manifest, folds, oof, scores = read_run(run_dir)
    assert list(folds.columns) == ["id", "fold"] and list(folds["id"]) == ids
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    # stratified: every class in every fold
    assert (pd.crosstab(folds["fold"], CLASSES[y]) > 0).all().all()
    assert list(oof.columns) == ["id", "fold", "cat", "dog", "owl"] and len(oof) == 180
    assert list(oof["id"][:8]) == ids[:8]
    assert (oof["fold"] == folds["fold"]).all()
    np.testing.assert_allclose(oof[["cat", "dog", "owl"]].sum(axis=1), 1.0, atol=1e-6)
    assert scores["metric"] == "logloss" and len(scores["folds"]) == 3
    assert set(scores["mean"]) == set(scores["std"]) == {"logloss", "accuracy", "f1_macro"}
    assert scores["mean"]["accuracy"] > 0.8

    assert manifest["task"] == "multiclass" and manifest["classes"] == ["cat", "dog", "owl"]
    assert manifest["head"]["name"] == "lgbm" and manifest["head"]["params"]["learning_rate"] == 0.2
    assert manifest["folds"] == 3 and manifest["seed"] == 42
    assert manifest["labels"]["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    assert manifest["labels"]["id_col"] == "id" and manifest["labels"]["target_col"] == "label"
    assert manifest["embeddings"][0]["fingerprint"] == fingerprint(load_manifest(emb))
    assert {"olymp", "torch", "lightgbm", "scikit-learn"} <= set(manifest["versions"])
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == ["fold-0.txt", "fold-1.txt", "fold-2.txt"]
    assert_no_pickle(run_dir)


def test_binary_json_summary(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(160, dim=10, n_classes=2, seed=1)
    ids = [f"img_{i}" for i in range(160)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "train.csv", image_id=ids, target=y)
    result = train_cli(
        emb, "--labels", labels, "--id-col", "image_id", "--target-col", "target", "-o", tmp_path / "run", "--json", *FAST
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "binary" and summary["classes"] == ["0", "1"]
    assert summary["task_reason"] == "binary: 2 distinct numeric labels (0, 1)"
    assert summary["metric"] == "auc" and summary["mean"]["auc"] > 0.9
    oof = pd.read_csv(tmp_path / "run" / "oof.csv")
    assert list(oof.columns) == ["id", "fold", "0", "1"]


def test_regression(tmp_path, make_embeddings, make_csv):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    target = X[:, 0] * 3 + X[:, 1] + rng.normal(scale=0.1, size=200)
    ids = [str(i) for i in range(200)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=[f"{v:.4f}" for v in target])
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--metric", "mae", *FAST)
    assert result.exit_code == 0, result.output
    assert "regression: non-integer numeric target" in result.output
    manifest, _, oof, scores = read_run(tmp_path / "run")
    assert manifest["classes"] is None and manifest["metric"] == "mae"
    assert manifest["prior"] == pytest.approx(float(np.mean(np.round(target, 4))))
    assert list(oof.columns) == ["id", "fold", "prediction"]
    assert scores["metrics"] == ["mae", "rmse", "r2"] and scores["mean"]["r2"] > 0.6


@pytest.mark.parametrize("head", ["lgbm", "logreg", "mlp"])
def test_saved_fold_models_reproduce_oof(tmp_path, multiclass, head):
    emb, labels, ids, y = multiclass
    result = train(TrainConfig(embeddings=[str(emb)], labels=str(labels), output=str(tmp_path / "run"),
                               head=head, folds=3, head_params={"learning_rate": 0.2} if head == "lgbm" else {}))
    assert result.mean["accuracy"] > 0.8
    _, folds, oof, _ = read_run(tmp_path / "run")
    from pipelines.data.embeddings import read_embeddings

    X = read_embeddings(emb).vectors
    suffix = get_head(head).suffix
    for k in range(3):
        model = get_head(head).load(tmp_path / "run" / "models" / f"fold-{k}{suffix}", "multiclass", 3)
        rows = (folds["fold"] == k).to_numpy()
        np.testing.assert_allclose(model.predict(X[rows]), oof.loc[rows, ["cat", "dog", "owl"]].to_numpy(), atol=1e-9)
    assert_no_pickle(tmp_path / "run")


@pytest.mark.parametrize("head", ["lgbm", "logreg", "mlp"])
def test_rare_class_missing_from_a_training_part_keeps_full_columns(tmp_path, make_embeddings, make_csv, make_separable, head):
    X, y = make_separable(120, dim=8, n_classes=2, seed=3)
    names = CLASSES[y].astype(object)
    names[7] = "zebra"  # one row: its fold's training part has no zebra
    ids = [f"r{i}" for i in range(120)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=names)
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--head", head, *(FAST if head == "lgbm" else FAST_LOGREG))
    assert result.exit_code == 0, result.output
    assert "fewer rows than --folds 3" in result.output and "'zebra': 1" in result.output
    manifest, folds, oof, scores = read_run(tmp_path / "run")
    assert manifest["classes"] == ["cat", "dog", "zebra"]
    assert list(oof.columns) == ["id", "fold", "cat", "dog", "zebra"]
    np.testing.assert_allclose(oof[["cat", "dog", "zebra"]].sum(axis=1), 1.0, atol=1e-6)
    zebra_fold = int(folds.loc[folds["id"] == "r7", "fold"].iloc[0])
    assert oof.loc[oof["fold"] == zebra_fold, "zebra"].max() < 0.05
    assert all(np.isfinite(fold["logloss"]) for fold in scores["folds"])


@pytest.mark.parametrize(
    "labels, task, reason",
    [
        (["a", "b", "a", "b"], "binary", "binary: 2 distinct string labels (a, b)"),
        ([str(i % 10) + "x" for i in range(40)], "multiclass", "multiclass: 10 distinct string labels"),
        (["1", "0", "1.0", "0"], "binary", "binary: 2 distinct numeric labels (0, 1)"),
        ([str(i % 5) for i in range(40)], "multiclass", "multiclass: 5 distinct integer labels"),
        (["007", "010", "7", "2"], "multiclass", "multiclass: 3 distinct integer labels"),
        ([str(i) for i in range(40)], "regression", "regression: numeric target with 40 distinct values"),
        (["0.5", "1.5", "2.25", "0.5"], "regression", "regression: non-integer numeric target"),
    ],
)
def test_task_inference_reasons(labels, task, reason):
    target = infer_task(np.array(labels, dtype=object))
    assert target.task == task
    assert target.reason.startswith(reason)


def test_numeric_classes_sort_by_value_and_keep_their_spelling():
    target = infer_task(np.array(["10", "007", "2", "10", "2"], dtype=object))
    assert target.classes == ["2", "007", "10"] and target.y.tolist() == [2, 1, 0, 2, 0]
    assert infer_task(np.array(["1", "0", "1.0"], dtype=object)).classes == ["0", "1"]


def test_task_override_and_its_checks():
    values = np.array([str(i % 5) for i in range(40)], dtype=object)
    target = infer_task(values, "regression")
    assert target.task == "regression" and "set by --task" in target.reason and target.y.dtype == np.float64
    with pytest.raises(ConfigError, match="--task binary needs exactly 2 classes; 'label' has 5; pass --task multiclass"):
        infer_task(values, "binary")
    with pytest.raises(ConfigError, match="needs a numeric target"):
        infer_task(np.array(["a", "b", "c"], dtype=object), "regression")
    with pytest.raises(InputError, match="single value"):
        infer_task(np.array(["a", "a"], dtype=object))


def test_group_column_keeps_groups_in_one_fold(tmp_path, multiclass, make_csv):
    emb, _, ids, y = multiclass
    groups = [f"patient{i // 6}" for i in range(180)]
    labels = make_csv(tmp_path / "grouped.csv", id=ids, label=CLASSES[y], patient=groups)
    result = train_cli(emb, "--labels", labels, "--group-col", "patient", "-o", tmp_path / "run", *FAST)
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", dtype={"id": str})
    folds["patient"] = groups
    assert (folds.groupby("patient")["fold"].nunique() == 1).all()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["labels"]["group_col"] == "patient"


def test_several_embedding_dirs_are_joined_on_id(tmp_path, multiclass, make_embeddings):
    emb, labels, ids, y = multiclass
    rng = np.random.default_rng(1)
    second = make_embeddings(tmp_path / "emb2", ids[10:][::-1], rng.normal(size=(170, 5)), backbone="other_net")
    result = train_cli(emb, second, "--labels", labels, "-o", tmp_path / "run", "--json", *FAST)
    assert result.exit_code == 0, result.output
    assert "10 labelled ids have no embedding in" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_rows"] == 170 and summary["n_features"] == 12 + 5
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [e["backbone"] for e in manifest["embeddings"]] == ["test_resnet", "other_net"]


@pytest.mark.parametrize(
    "extra, error",
    [
        (["--target-col", "target"], "labels.csv has no column 'target' (columns: id, label); pass --target-col label"),
        (["--id-col", "image_id"], "labels.csv has no column 'image_id' (columns: id, label); pass --id-col"),
        (["--group-col", "site"], "labels.csv has no column 'site'"),
        (["--head", "xgb"], "unknown head 'xgb'; pass --head with one of: lgbm, logreg"),
        (["--task", "ranking"], "unknown task 'ranking'"),
        (["--metric", "rmse"], "metric 'rmse' does not fit a multiclass task; pass --metric with one of: logloss"),
        (["--param", "num_leaves"], "--param 'num_leaves' is not KEY=VALUE"),
        (["--head", "logreg", "--param", "alpha=1"], "LogisticRegression has no parameter 'alpha'"),
        (["--task", "binary"], "--task binary needs exactly 2 classes"),
        (["--folds", "200"], "only 180 labelled rows for 200 folds"),
    ],
)
def test_errors_name_the_fix(tmp_path, multiclass, extra, error):
    emb, labels, _, _ = multiclass
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *extra)
    assert result.exit_code == 1, result.output
    assert error in " ".join(result.stderr.split())
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_missing_target_column_suggests_the_other_column(tmp_path, multiclass, make_csv):
    emb, _, ids, y = multiclass
    labels = make_csv(tmp_path / "labels.csv", id=ids, target=CLASSES[y])
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run")
    assert result.exit_code == 1
    assert "labels.csv has no column 'label' (columns: id, target); pass --target-col target" in " ".join(result.stderr.split())


def test_input_refusals(tmp_path, multiclass, make_csv, make_embeddings):
    emb, labels, ids, y = multiclass
    assert train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *FAST).exit_code == 0
    again = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *FAST)
    assert again.exit_code == 1 and "already holds a run; pass --overwrite" in again.stderr
    assert train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--overwrite", *FAST).exit_code == 0

    other = make_csv(tmp_path / "other.csv", id=[f"x{i}" for i in range(10)], label=["a", "b"] * 5)
    result = train_cli(emb, "--labels", other, "-o", tmp_path / "run2")
    assert result.exit_code == 1 and "no id of other.csv matches a file in" in result.stderr

    dup = make_csv(tmp_path / "dup.csv", id=ids + ids[:2], label=list(CLASSES[y]) + ["cat", "cat"])
    result = train_cli(emb, "--labels", dup, "-o", tmp_path / "run3")
    assert result.exit_code == 1 and "2 duplicate ids in 'id' (e.g. '000')" in result.stderr

    partial = make_embeddings(tmp_path / "partial", ids, np.zeros((180, 4)), status="partial")
    result = train_cli(partial, "--labels", labels, "-o", tmp_path / "run4")
    assert result.exit_code == 1 and "unfinished extraction (status 'partial')" in " ".join(result.stderr.split())


def test_rows_without_a_label_are_left_out(tmp_path, multiclass, make_csv):
    emb, _, ids, y = multiclass
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=[""] * 20 + list(CLASSES[y][20:]))
    result = train(TrainConfig(embeddings=[str(emb)], labels=str(labels), output=str(tmp_path / "run"), folds=3, head="lgbm",
                               head_params={"learning_rate": 0.2}))
    assert result.n_rows == 160
    assert any("20 rows of labels.csv have no 'label'" in w for w in result.warnings)


def test_lgbm_params_are_one_plain_recipe():
    from pipelines.heads.lgbm import PATIENCE_MAX, LGBMHead, default_lgbm_params

    params = default_lgbm_params("multiclass", 4, metric="accuracy")
    assert params["num_class"] == 4 and params["metric"] == "multi_error"
    assert params["early_stopping_round"] == PATIENCE_MAX and params["verbosity"] == -1
    assert default_lgbm_params("binary", 2, metric="f1_macro")["metric"] == "binary_logloss"
    # an alias of a default parameter replaces it instead of losing to it
    merged = LGBMHead.resolve_params("binary", 2, {"n_estimators": 50, "colsample_bytree": 0.9}, None, 0)
    assert merged["n_estimators"] == 50 and "num_iterations" not in merged
    assert merged["colsample_bytree"] == 0.9 and "feature_fraction" not in merged


# --------------------------------------------------------------------------- run folders

def tree(folder):
    """Every path under `folder` with its bytes (None for folders)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_touches_nothing(tmp_path, multiclass):
    emb, labels, ids, y = multiclass
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "resnet.pt").write_bytes(b"the user's own checkpoint")
    (project / "manifest.json").write_text('{"name": "my web app"}')
    (project / "notes.txt").write_text("keep me")
    before = tree(project)
    for extra in (["--overwrite"], []):
        result = train_cli(emb, "--labels", labels, "-o", project, *extra, *FAST_LOGREG, "--head", "logreg")
        assert result.exit_code == 1, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "olymp did not write" in result.stderr and "choose a new folder" in flat(result.stderr)
        assert tree(project) == before

    plain = tmp_path / "plain"  # a folder with other files only: --overwrite still refuses it
    plain.mkdir()
    (plain / "data.csv").write_text("a,b\n")
    result = train_cli(emb, "--labels", labels, "-o", plain, "--overwrite", *FAST_LOGREG, "--head", "logreg")
    assert result.exit_code == 1 and "is not an olymp run" in result.stderr
    assert tree(plain) == {"data.csv": b"a,b\n"}


def flat(text):
    return " ".join(text.split())


def interrupt_fold(monkeypatch, at_call):
    """train-head dies (like a kill) as the logreg head's fit is called for the `at_call`-th time
    (never with None); returns the list that counts the calls."""
    from pipelines.heads.logreg import LogRegHead

    fit, calls = LogRegHead.fit, []

    def dying_fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogRegHead, "fit", dying_fit)
    return calls


def test_an_interrupted_train_head_resumes_with_the_same_command(tmp_path, multiclass, monkeypatch):
    emb, labels, ids, y = multiclass
    args = [emb, "--labels", labels, "-o", tmp_path / "run", "--head", "logreg", "--folds", "4", "--normalize", "standard"]
    calls = interrupt_fold(monkeypatch, at_call=3)
    killed = train_cli(*args)
    assert killed.exit_code == 130
    assert not (tmp_path / "run" / "manifest.json").exists()
    refused = runner.invoke(app, ["predict", str(tmp_path / "run"), str(emb), "-o", str(tmp_path / "sub.csv")])
    assert refused.exit_code == 1 and "interrupted train-head run" in refused.stderr
    assert "re-run the same olymp train-head command" in flat(refused.stderr)

    monkeypatch.undo()
    calls = interrupt_fold(monkeypatch, at_call=None)
    resumed = train_cli(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "fold 0: reused" in flat(resumed.stderr) and "fold 1: reused" in flat(resumed.stderr)
    assert len(calls) == 2  # only folds 2 and 3 were fitted again
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []
    assert not list((tmp_path / "run" / "models").glob("*.done.json"))

    monkeypatch.undo()
    fresh = train_cli(*args[:4], tmp_path / "fresh", *args[5:])
    assert fresh.exit_code == 0, fresh.output
    resumed_run, fresh_run = read_run(tmp_path / "run"), read_run(tmp_path / "fresh")
    pd.testing.assert_frame_equal(resumed_run[2], fresh_run[2], check_exact=False, rtol=1e-9)
    assert resumed_run[3]["oof"] == pytest.approx(fresh_run[3]["oof"])
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), str(emb), "-o", str(tmp_path / "sub.csv")])
    assert predicted.exit_code == 0, predicted.output


def test_an_interrupted_run_is_refitted_when_the_settings_changed_and_replaced_with_overwrite(tmp_path, multiclass, monkeypatch):
    emb, labels, ids, y = multiclass
    args = [emb, "--labels", labels, "-o", tmp_path / "run", "--head", "logreg", "--folds", "3"]
    interrupt_fold(monkeypatch, at_call=2)
    assert train_cli(*args).exit_code == 130
    monkeypatch.undo()
    calls = interrupt_fold(monkeypatch, at_call=None)  # counts only
    changed = train_cli(*args, "--param", "C=0.5")  # another head setting: fold 0 is not reused
    assert changed.exit_code == 0, changed.output
    assert "fold 0: reused" not in flat(changed.stderr) and len(calls) == 3
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["head"]["params"]["C"] == 0.5

    monkeypatch.undo()
    interrupt_fold(monkeypatch, at_call=2)
    assert train_cli(*args, "--overwrite").exit_code == 130  # killed while replacing it
    monkeypatch.undo()
    replaced = train_cli(*args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "fold 0: reused" not in flat(replaced.stderr) and "interrupted" not in replaced.stderr


def test_a_kill_while_writing_the_manifest_leaves_a_run_that_resumes(tmp_path, multiclass, monkeypatch):
    from pathlib import Path

    emb, labels, ids, y = multiclass
    args = [emb, "--labels", labels, "-o", tmp_path / "run", "--head", "logreg", *FAST_LOGREG]
    write_text = Path.write_text

    def dies_in_manifest(self, text, *a, **k):
        if "manifest" in self.name:
            write_text(self, text[: len(text) // 2])
            raise KeyboardInterrupt
        return write_text(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", dies_in_manifest)
    assert train_cli(*args).exit_code == 130
    monkeypatch.undo()
    assert not (tmp_path / "run" / "manifest.json").exists()  # never half a manifest
    again = train_cli(*args)
    assert again.exit_code == 0, again.output
    assert "fold 2: reused" in flat(again.stderr)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["kind"] == "head_run"
