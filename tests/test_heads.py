"""Heads that win: the mlp head, multilabel tasks (folds, heads, metrics, predict), groups that
never cross folds, and complete class sets with a rare class — through the CLI and the library."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data import cv
from pipelines.train import metrics
from pipelines.core.errors import ConfigError, InputError
from pipelines.heads import get_head
from pipelines.data.tasks import Target, multilabel_target

runner = CliRunner()
LABELS = np.array(["bark", "dog", "rain", "car"])
FAST = {"lgbm": ["--param", "learning_rate=0.3"], "logreg": [], "mlp": ["--param", "hidden=64"]}
MLP_SMALL = {"hidden": [64]}


def cli(*args):
    return runner.invoke(app, [*map(str, args)])


def flat(text: str) -> str:
    return " ".join(text.split())


def multilabel_data(n: int, seed: int = 0):
    """Features where label j is on when feature j is high; most rows carry 1-2 labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10)).astype(np.float32)
    Y = (X[:, :4] + 0.3 * rng.normal(size=(n, 4)) > 0.5).astype(np.int8)
    Y[Y.sum(axis=1) == 0, 3] = 1  # every row has a label ("car" when nothing else)
    return X, Y


@pytest.fixture
def tagged(tmp_path, make_embeddings, make_csv):
    """Train (180 rows, space-separated tags) and test (40 rows) embeddings."""
    X, Y = multilabel_data(220)
    ids = [f"clip{i:03d}" for i in range(220)]
    emb = make_embeddings(tmp_path / "emb", ids[:180], X[:180])
    test = make_embeddings(tmp_path / "test", ids[180:], X[180:])
    tags = [" ".join(LABELS[row.astype(bool)]) for row in Y[:180]]
    labels = make_csv(tmp_path / "train.csv", fname=ids[:180], tags=tags)
    return {"emb": emb, "test": test, "labels": labels, "Y": Y[:180], "ids": ids}


# --------------------------------------------------------------------------- multilabel end to end

@pytest.mark.parametrize("head", ["lgbm", "logreg", "mlp"])
def test_multilabel_tags_train_and_predict(tmp_path, tagged, head):
    run = tmp_path / "run"
    result = cli("train-head", tagged["emb"], "--labels", tagged["labels"], "--id-col", "fname", "--target-col", "tags",
                 "--label-sep", " ", "-o", run, "--head", head, "--folds", "3", "--json", *FAST[head])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "multilabel" and summary["classes"] == sorted(LABELS)
    assert "multilabel: 4 labels from 'tags' split on ' '" in summary["task_reason"]
    assert summary["metric"] == "lwlrap" and summary["oof"]["lwlrap"] > 0.8
    assert set(summary["oof"]) == {"lwlrap", "map", "f1_micro", "f1_macro", "logloss"}
    assert 0 < summary["threshold"] < 1

    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert list(oof.columns) == ["id", "fold", *sorted(LABELS)]
    truth = np.column_stack([tagged["Y"][:, list(LABELS).index(name)] for name in sorted(LABELS)])
    assert metrics.lwlrap(truth, oof[sorted(LABELS)].to_numpy()) == pytest.approx(summary["oof"]["lwlrap"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["at_least_one_label"] is True and manifest["labels"]["label_sep"] == " "
    per_label = pd.read_csv(run / "per_class.csv", dtype={"class": str})  # report: one row per label
    assert list(per_label["class"]) == sorted(LABELS) and (per_label["support"] == truth.sum(axis=0)).all()
    assert "confusion" not in manifest["reports"]
    shown = cli("report", run)
    assert shown.exit_code == 0, shown.output
    assert f"{per_label['average_precision'].iloc[0]:.4f}" in shown.output

    result = cli("predict", run, tagged["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["fname", "tags"] and len(sub) == 40
    assert all(row and set(row.split(" ")) <= set(LABELS) for row in sub["tags"])  # top-1 fallback: never empty

    result = cli("predict", run, tagged["test"], "-o", tmp_path / "proba.csv", "--proba")
    assert result.exit_code == 0, result.output
    proba = pd.read_csv(tmp_path / "proba.csv")
    assert list(proba.columns) == ["fname", *sorted(LABELS)]
    values = proba[sorted(LABELS)].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    # the joined labels are the probabilities at the run's threshold (plus the top label when none passes)
    decided = metrics.multilabel_decisions(values, manifest["threshold"], at_least_one=True)
    joined = [" ".join(np.asarray(sorted(LABELS))[row.astype(bool)]) for row in decided]
    assert joined == list(sub["tags"])


def test_multilabel_runs_blend_and_the_blend_predicts_tags(tmp_path, tagged):
    base = ("--labels", tagged["labels"], "--id-col", "fname", "--target-col", "tags", "--label-sep", " ", "--folds", "3")
    assert cli("train-head", tagged["emb"], *base, "-o", tmp_path / "lr", "--head", "logreg").exit_code == 0
    result = cli("train-head", tagged["emb"], *base, "-o", tmp_path / "mlp", "--head", "mlp", *FAST["mlp"],
                 "--folds-from", tmp_path / "lr")
    assert result.exit_code == 0, result.output
    result = cli("blend", tmp_path / "lr", tmp_path / "mlp", "-o", tmp_path / "blend", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    best = max(member["oof"]["lwlrap"] for member in summary["members"])
    assert summary["oof"]["lwlrap"] >= best - 1e-12
    manifest = json.loads((tmp_path / "blend" / "manifest.json").read_text())
    assert 0 < manifest["threshold"] < 1 and manifest["at_least_one_label"] is True

    result = cli("predict", tmp_path / "blend", tagged["test"], "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["fname", "tags"] and len(sub) == 40
    assert all(row and set(row.split(" ")) <= set(LABELS) for row in sub["tags"])


def test_multilabel_zero_one_columns_and_threshold_option(tmp_path, make_embeddings, make_csv):
    X, Y = multilabel_data(150, seed=1)
    Y[:10] = 0  # some rows without any label: no top-1 fallback then
    ids = [str(i) for i in range(150)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, **{name: Y[:, j] for j, name in enumerate(LABELS)})
    result = cli("train-head", emb, "--labels", labels, "--target-col", "bark,dog,rain,car", "-o", tmp_path / "run",
                 "--head", "logreg", "--folds", "3", "--threshold", "0.9")
    assert result.exit_code == 0, result.output
    assert "multilabel threshold 0.90" in result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["classes"] == list(LABELS) and manifest["threshold"] == 0.9
    assert manifest["at_least_one_label"] is False

    result = cli("predict", tmp_path / "run", emb, "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str})
    assert list(sub.columns) == ["id", *LABELS] and set(np.unique(sub[list(LABELS)])) <= {0, 1}
    low = cli("predict", tmp_path / "run", emb, "-o", tmp_path / "low.csv", "--threshold", "0.1")
    assert low.exit_code == 0, low.output
    assert pd.read_csv(tmp_path / "low.csv")[list(LABELS)].to_numpy().sum() > sub[list(LABELS)].to_numpy().sum()


def test_multilabel_predict_follows_the_sample_submission(tmp_path, tagged, make_csv):
    run = tmp_path / "run"
    result = cli("train-head", tagged["emb"], "--labels", tagged["labels"], "--id-col", "fname", "--target-col", "tags",
                 "--label-sep", " ", "-o", run, "--head", "logreg", "--folds", "3")
    assert result.exit_code == 0, result.output
    test_ids = tagged["ids"][180:]
    one_column = make_csv(tmp_path / "sample1.csv", clip=test_ids[::-1], labels=["x"] * 40)
    result = cli("predict", run, tagged["test"], "-o", tmp_path / "sub1.csv", "--sample-submission", one_column)
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub1.csv", dtype=str)
    assert list(sub.columns) == ["clip", "labels"] and list(sub["clip"]) == test_ids[::-1]
    assert all(set(row.split(" ")) <= set(LABELS) for row in sub["labels"])

    per_label = make_csv(tmp_path / "sample2.csv", clip=test_ids, car=[0] * 40, bark=[0] * 40, rain=[0] * 40, dog=[0] * 40)
    result = cli("predict", run, tagged["test"], "-o", tmp_path / "sub2.csv", "--sample-submission", per_label)
    assert result.exit_code == 0, result.output
    assert "writing 0/1 decisions" in flat(result.output)
    decisions = pd.read_csv(tmp_path / "sub2.csv")
    assert list(decisions.columns) == ["clip", "car", "bark", "rain", "dog"]
    assert set(np.unique(decisions[["car", "bark", "rain", "dog"]])) == {0, 1}
    result = cli("predict", run, tagged["test"], "-o", tmp_path / "sub3.csv", "--sample-submission", one_column, "--proba")
    assert result.exit_code == 0, result.output  # an id,labels sample with --proba: one column per label
    probabilities = pd.read_csv(tmp_path / "sub3.csv", dtype={"clip": str})
    assert list(probabilities["clip"]) == test_ids[::-1] and set(probabilities.columns) == {"clip", *LABELS}


@pytest.mark.parametrize(
    "extra, error",
    [
        (["--label-sep", " ", "--task", "binary"], "--label-sep ' ' make a multilabel task, not binary"),
        (["--task", "multilabel"], "--task multilabel needs several labels per row: pass --label-sep ' '"),
        (["--target-col", "tags,fname"], "multilabel column 'tags' holds"),
        (["--label-sep", " ", "--threshold", "1.5"], "--threshold 1.5 is not a probability"),
        (["--head", "mlp", "--param", "layers=2"], "the mlp head has no parameter 'layers'; --param takes one of: hidden"),
        (["--head", "mlp", "--param", "schedule=step"], "--param schedule='step' is unknown; pass one of: onecycle"),
    ],
)
def test_multilabel_and_mlp_errors_name_the_fix(tmp_path, tagged, extra, error):
    result = cli("train-head", tagged["emb"], "--labels", tagged["labels"], "--id-col", "fname", "--target-col", "tags",
                 "-o", tmp_path / "run", *extra)
    assert result.exit_code == 1, result.output
    assert error in flat(result.stderr)


def test_target_from_tags_and_from_columns_agree():
    tags = np.array(["dog bark", "rain", " bark  ", "car dog"], dtype=object)
    target = multilabel_target(tags, ["tags"], " ")
    assert target.classes == ["bark", "car", "dog", "rain"]
    assert target.y.tolist() == [[1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 1, 0]]
    columns = multilabel_target(np.array([["1", "0"], ["0", "1.0"], ["1", "1"]], dtype=object), ["a", "b"], None)
    assert columns.classes == ["a", "b"] and columns.y.tolist() == [[1, 0], [0, 1], [1, 1]]


# --------------------------------------------------------------------------- metrics

def test_lwlrap_by_hand_and_against_sklearn():
    from sklearn.metrics import label_ranking_average_precision_score as lrap

    truth = np.array([[1, 0, 1], [0, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.5]])
    # row 0: label 0 ranks 1st (1/1), label 2 ranks 3rd with 2 positives at or above (2/3);
    # row 1: label 1 ranks 2nd, 1 positive at or above (1/2). Three pairs, equal weight.
    assert metrics.lwlrap(truth, scores) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert lrap(truth, scores) == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)  # rows weigh equally there

    rng = np.random.default_rng(0)
    Y = (rng.random((60, 7)) < 0.3).astype(int)
    Y[Y.sum(axis=1) == 0, 0] = 1
    S = np.round(rng.random((60, 7)), 1)  # ties included
    assert metrics.lwlrap(Y, S) == pytest.approx(lrap(Y, S, sample_weight=Y.sum(axis=1)))
    same_count = np.zeros((60, 7), dtype=int)
    same_count[np.arange(60), rng.integers(0, 7, 60)] = 1
    assert metrics.lwlrap(same_count, S) == pytest.approx(lrap(same_count, S))


def test_threshold_tuning_and_top_label_fallback():
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    proba = np.array([[0.35, 0.1], [0.2, 0.4], [0.38, 0.33], [0.05, 0.1]])
    threshold = metrics.tune_threshold(truth, proba)
    assert 0.2 < threshold <= 0.33  # every positive above, every negative below
    assert metrics.score("multilabel", truth, proba, ["f1_micro"], threshold)["f1_micro"] == pytest.approx(1.0)
    assert metrics.multilabel_decisions(proba, 0.9).sum() == 0
    assert metrics.multilabel_decisions(proba, 0.9, at_least_one=True).tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]


# --------------------------------------------------------------------------- folds

def test_iterative_stratification_spreads_every_label():
    _, Y = multilabel_data(300, seed=2)
    Y = np.column_stack([Y, np.r_[np.ones(7), np.zeros(293)]]).astype(np.int8)  # a rare label: 7 rows
    folds = cv.iterative_stratification(Y, 5, seed=3)
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 0.1 * 300 / 5  # labels first, then sizes
    for column in Y.T:
        per_fold = np.bincount(folds[column == 1], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, per_fold
    assert (cv.iterative_stratification(Y, 5, seed=3) == folds).all()
    assert not (cv.iterative_stratification(Y, 5, seed=4) == folds).all()


def test_iterative_stratification_keeps_groups_whole():
    _, Y = multilabel_data(200, seed=4)
    groups = np.array([f"g{i // 4}" for i in range(200)], dtype=object)
    folds = cv.iterative_stratification(Y, 4, seed=0, groups=groups)
    cv.check_groups_within_folds(folds, groups)
    assert (pd.Series(folds).groupby(groups).nunique() == 1).all()
    assert np.bincount(folds).min() >= 40


def test_a_group_spanning_two_folds_is_caught():
    groups = np.array(["a", "a", "b", "b"], dtype=object)
    cv.check_groups_within_folds(np.array([0, 0, 1, 1]), groups)
    with pytest.raises(InputError, match="group 'b' spans folds 1 and 0"):
        cv.check_groups_within_folds(np.array([0, 0, 1, 0]), groups)


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
def test_grouped_folds_never_cross_through_the_cli(tmp_path, make_embeddings, make_csv, kind):
    X, Y = multilabel_data(160, seed=5)
    ids = [f"r{i}" for i in range(160)]
    groups = [f"site{i % 23}" for i in range(160)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    if kind == "multilabel":
        target = {"tags": [" ".join(LABELS[row.astype(bool)]) for row in Y]}
        extra = ["--target-col", "tags", "--label-sep", " "]
    else:
        target = {"label": [f"{v:.3f}" for v in X[:, 0] * 2 + 0.5]}
        extra = []
    labels = make_csv(tmp_path / "labels.csv", id=ids, site=groups, **target)
    result = cli("train-head", emb, "--labels", labels, "--group-col", "site", "-o", tmp_path / "run",
                 "--head", "logreg", "--folds", "4", *extra)
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", dtype={"id": str})
    assert (folds["fold"].groupby(pd.Series(groups)).nunique() == 1).all()
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3]


def test_unbalanced_groups_are_warned_about(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(120, dim=6, n_classes=2, seed=7)
    ids = [str(i) for i in range(120)]
    groups = ["big"] * 60 + [f"g{i}" for i in range(60)]  # one group is half of all rows
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=y, site=groups)
    result = cli("train-head", emb, "--labels", labels, "--group-col", "site", "-o", tmp_path / "run", "--head", "logreg",
                 "--folds", "4")
    assert result.exit_code == 0, result.output
    assert "group 'big' holds 60 of 120 rows (200% of a fold)" in flat(result.stderr)
    assert "groups make the folds uneven" in flat(result.stderr)


# --------------------------------------------------------------------------- complete class sets

@pytest.mark.parametrize("head", ["lgbm", "logreg", "mlp"])
def test_rare_class_keeps_every_column_in_oof_and_predictions(tmp_path, make_embeddings, make_csv, make_separable, head):
    X, y = make_separable(150, dim=8, n_classes=3, seed=8)
    names = np.array(["ant", "bee", "cow"], dtype=object)[y]
    names[[4, 9]] = "yak"  # 2 rows for 5 folds: some training parts hold one yak, others two
    ids = [f"r{i}" for i in range(130)]
    emb = make_embeddings(tmp_path / "emb", ids, X[:130])
    test = make_embeddings(tmp_path / "test", [f"t{i}" for i in range(20)], X[130:])
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=names[:130])
    result = cli("train-head", emb, "--labels", labels, "-o", tmp_path / "run", "--head", head, "--folds", "5", *FAST[head])
    assert result.exit_code == 0, result.output
    assert "'yak': 2" in result.stderr
    classes = ["ant", "bee", "cow", "yak"]
    oof = pd.read_csv(tmp_path / "run" / "oof.csv")
    assert list(oof.columns) == ["id", "fold", *classes]
    np.testing.assert_allclose(oof[classes].sum(axis=1), 1.0, atol=1e-6)
    result = cli("predict", tmp_path / "run", test, "-o", tmp_path / "sub.csv", "--proba")
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(sub.columns) == ["id", *classes]
    np.testing.assert_allclose(sub[classes].sum(axis=1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- the mlp head

def _task_data(task: str, n: int = 120):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, 12)).astype(np.float32)
    if task == "binary":
        return X, (X[:, 0] > 0).astype(np.int64), 2
    if task == "multiclass":
        return X, np.digitize(X[:, 0], [-0.5, 0.5]).astype(np.int64), 3
    if task == "regression":
        return X, 3.0 * X[:, 0] + X[:, 1] + 10.0, 0
    return X, (X[:, :3] > 0).astype(np.int8), 3


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression", "multilabel"])
def test_mlp_save_load_predicts_like_the_fitted_head(tmp_path, task):
    X, y, k = _task_data(task)
    head_cls = get_head("mlp")
    head = head_cls(task, k, MLP_SMALL, seed=0).fit(X[:90], y[:90])
    head.save(tmp_path / "fold-0.safetensors")
    assert json.loads((tmp_path / "fold-0.json").read_text())["hidden"] == [64]
    loaded = head_cls.load(tmp_path / "fold-0.safetensors", task, k)
    expected = head.predict(X)
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-6, atol=1e-7)
    assert expected.shape == ((120,) if task == "regression" else (120, k))
    if task == "regression":  # learned something, on the original scale
        assert np.corrcoef(expected[90:], y[90:])[0, 1] > 0.8
    again = head_cls(task, k, MLP_SMALL, seed=0).fit(X[:90], y[:90])
    np.testing.assert_allclose(again.predict(X), expected)  # seeded: a rerun repeats exactly


def test_mlp_early_stopping_restores_the_best_epoch(monkeypatch):
    from pipelines.heads import mlp
    from pipelines.heads.base import inner_split

    rng = np.random.default_rng(12)
    X = rng.normal(size=(200, 20)).astype(np.float32)
    y = rng.integers(0, 3, 200)  # noise: a wide net overfits, the validation loss turns up
    params = {"hidden": [256], "dropout": 0.0, "input_dropout": 0.0, "lr": 1e-2, "schedule": "constant", "epochs": 40, "patience": 40}
    monkeypatch.setattr(mlp, "REFIT", False)  # keep the inner-trained network, to check its restored weights
    head = get_head("mlp")("multiclass", 3, params, seed=0).fit(X, y)
    history = np.array(head.history)
    assert len(history) == 40 and history.argmin() < 39 and history[-1] > history.min() * 1.2
    assert head.info == {"best_epoch": int(history.argmin()) + 1, "epochs_run": 40}
    _, held = inner_split("multiclass", y, 3, 0)  # the head's own inner-validation rows
    proba = head.predict(X[held])
    restored_loss = -np.mean(np.log(proba[np.arange(len(held)), y[held]]))
    assert restored_loss == pytest.approx(history.min(), rel=1e-5)  # the kept weights are the best epoch's

    stopped = get_head("mlp")("multiclass", 3, {**params, "patience": 3}, seed=0).fit(X, y)
    assert stopped.info["epochs_run"] == stopped.info["best_epoch"] + 3 < 40


def test_mlp_refits_on_the_whole_training_part_for_the_best_epoch_count(monkeypatch):
    from pipelines.heads import mlp

    X, y, k = _task_data("multiclass", n=200)
    runs = []
    original = mlp.MLPHead._train
    monkeypatch.setattr(mlp.MLPHead, "_train", lambda self, X, y, valid, stop_after, progress, label:
                        runs.append((len(X), valid is not None, stop_after)) or original(self, X, y, valid, stop_after, progress, label))
    head = get_head("mlp")("multiclass", k, MLP_SMALL, seed=0).fit(X, y)
    (inner_rows, watched, _), (refit_rows, refit_watched, refit_epochs) = runs
    assert watched and not refit_watched and inner_rows == 160 and refit_rows == 200
    assert refit_epochs == head.info["best_epoch"] and len(head.x_mean) == 12
    np.testing.assert_allclose(head.x_mean, X.mean(axis=0), rtol=1e-5)  # standardized on the whole training part


def test_mlp_params_parse_from_the_command_line_forms():
    head_cls = get_head("mlp")
    params = head_cls.resolve_params("binary", 2, {"hidden": "1024,256", "epochs": "30", "lr": 0.003}, None, 0)
    assert params["hidden"] == [1024, 256] and params["epochs"] == 30 and params["lr"] == 0.003
    assert head_cls.resolve_params("binary", 2, {"hidden": 0}, None, 0)["hidden"] == []
    with pytest.raises(ConfigError, match="dropout=1.5 must be in"):
        head_cls.resolve_params("binary", 2, {"dropout": 1.5}, None, 0)


def test_multilabel_target_has_its_own_task():
    target = Target("multilabel", "", ["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.int8))
    assert target.is_multilabel and not target.is_classification and target.n_classes == 2


@pytest.mark.requires_cuda
def test_mlp_trains_on_the_gpu_and_its_saved_model_predicts_the_same(tmp_path):
    X, y, k = _task_data("multiclass", n=400)
    head_cls = get_head("mlp")
    gpu = head_cls("multiclass", k, {**MLP_SMALL, "device": "cuda"}, seed=0).fit(X[:300], y[:300])
    assert next(gpu.network.parameters()).is_cuda
    cpu = head_cls("multiclass", k, {**MLP_SMALL, "device": "cpu"}, seed=0).fit(X[:300], y[:300])
    accuracy = {name: (h.predict(X[300:]).argmax(1) == y[300:]).mean() for name, h in (("gpu", gpu), ("cpu", cpu))}
    assert accuracy["gpu"] > 0.8 and abs(accuracy["gpu"] - accuracy["cpu"]) < 0.05
    gpu.save(tmp_path / "fold-0.safetensors")
    loaded = head_cls.load(tmp_path / "fold-0.safetensors", "multiclass", k)
    np.testing.assert_allclose(loaded.predict(X), gpu.predict(X), rtol=1e-5, atol=1e-6)
