"""`olymp blend` through the CLI and the library: weights on OOF predictions, never below the best
input, refusals naming the run that differs, and `olymp predict` on a blend directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.metrics import GREATER_IS_BETTER
from pipelines.predict import PredictConfig, predict

runner = CliRunner()
CLASSES = np.array(["cat", "dog", "owl"])


def cli(*args):
    return runner.invoke(app, [*map(str, args)])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_embeddings, make_csv, make_separable):
    """Two sources that each see half the signal; runs on one folds.csv: logreg on A, logreg on B,
    lgbm on A+B; a run on other folds; test embeddings for both sources."""
    root = tmp_path_factory.mktemp("blend")
    X, y = make_separable(260, dim=12, n_classes=3, seed=21)
    noise = np.random.default_rng(2).normal(scale=1.5, size=X.shape).astype(np.float32)
    X = X + noise  # no source alone separates the classes
    ids = [f"{i:04d}" for i in range(260)]
    train_ids, test_ids = ids[:200], ids[200:]
    make_embeddings(root / "a_train", train_ids, X[:200, :6])
    make_embeddings(root / "b_train", train_ids, X[:200, 6:], backbone="b_net")
    make_embeddings(root / "a_test", test_ids, X[200:, :6])
    make_embeddings(root / "b_test", test_ids, X[200:, 6:], backbone="b_net")
    make_csv(root / "labels.csv", id=train_ids, label=CLASSES[y[:200]])
    common = ["--labels", root / "labels.csv", "--folds", "4"]
    for args in (
        [root / "a_train", "-o", root / "lr_a", "--head", "logreg"],
        [root / "b_train", "-o", root / "lr_b", "--head", "logreg", "--folds-from", root / "lr_a"],
        [root / "a_train", root / "b_train", "-o", root / "lgbm", "--head", "lgbm", "--folds-from", root / "lr_a",
         "--param", "learning_rate=0.3"],
        [root / "b_train", "-o", root / "other_folds", "--head", "logreg", "--seed", "7"],
    ):
        result = cli("train-head", *args, *common)
        assert result.exit_code == 0, result.output
    return {"root": root, "test_ids": test_ids, "y_test": CLASSES[y[200:]]}


def oof_values(run_dir):
    return pd.read_csv(run_dir / "oof.csv", dtype={"id": str}).set_index("id")[list(CLASSES)]


@pytest.mark.parametrize("method", ["greedy", "nnls"])
def test_blend_scores_at_least_the_best_input(tmp_path, runs, method):
    root = runs["root"]
    members = [root / "lr_a", root / "lr_b", root / "lgbm"]
    result = cli("blend", *members, "-o", tmp_path / "blend", "--method", method, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metric = summary["metric"]
    assert metric == "logloss" and not GREATER_IS_BETTER[metric]
    best_input = min(member["oof"][metric] for member in summary["members"])
    assert summary["oof"][metric] <= best_input + 1e-12
    weights = np.array([member["weight"] for member in summary["members"]])
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    assert (weights > 0).sum() >= 2  # the sources are complementary: a real blend, not one run

    blend_dir = tmp_path / "blend"
    manifest = json.loads((blend_dir / "manifest.json").read_text())
    assert manifest["kind"] == "blend" and manifest["method"] == method
    assert [m["absolute_path"] for m in manifest["members"]] == [str(p.resolve()) for p in members]
    assert [m["weight"] for m in manifest["members"]] == pytest.approx(weights.tolist())
    # oof.csv is the weighted sum of the members' OOF rows (member rows matched by id)
    blended = oof_values(blend_dir)
    expected = sum(w * oof_values(p).loc[blended.index] for w, p in zip(weights, members))
    np.testing.assert_allclose(blended.to_numpy(), expected.to_numpy(), atol=1e-9)
    scores = json.loads((blend_dir / "scores.json").read_text())
    assert scores["oof"][metric] == pytest.approx(summary["oof"][metric]) and len(scores["folds"]) == 4


def test_blend_table_names_every_run(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(runs["root"])
    result = cli("blend", "lr_a", "lr_b", "-o", tmp_path / "blend")
    assert result.exit_code == 0, result.output
    assert "lr_a" in result.output and "lr_b" in result.output and "blend (greedy)" in result.output
    assert "next: olymp predict" in flat(result.output)
    quiet = cli("blend", "lr_a", "lr_b", "-o", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == "" and (tmp_path / "quiet" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (["lr_a", "other_folds"], "other_folds used other folds than"),
        (["lr_a"], "a blend needs two or more runs"),
        (["lr_a", "lr_a"], "a run is given twice"),
    ],
)
def test_blend_refusals(tmp_path, runs, members, message):
    root = runs["root"]
    result = cli("blend", *(root / m for m in members), "-o", tmp_path / "blend")
    assert result.exit_code == 1 and message in flat(result.stderr), result.output
    assert not (tmp_path / "blend" / "manifest.json").exists()


def test_blend_refuses_different_folds_naming_the_fix(tmp_path, runs):
    root = runs["root"]
    result = cli("blend", root / "lr_a", root / "other_folds", "-o", tmp_path / "blend")
    assert f"retrain it with --folds-from {root / 'lr_a'}" in flat(result.stderr)


def test_predict_on_a_blend_dir_combines_member_predictions(tmp_path, runs):
    root = runs["root"]
    members = [root / "lr_a", root / "lr_b", root / "lgbm"]
    assert cli("blend", *members, "-o", tmp_path / "blend").exit_code == 0
    weights = [m["weight"] for m in json.loads((tmp_path / "blend" / "manifest.json").read_text())["members"]]
    # test dirs in any order: each member picks its own by fingerprint
    result = cli("predict", tmp_path / "blend", root / "b_test", root / "a_test", "-o", tmp_path / "sub.csv", "--proba")
    assert result.exit_code == 0, result.output
    used = sum(w > 0 for w in weights)  # a member with weight 0 is not run
    assert used >= 2 and f"blend of {used} runs, mean of {4 * used} fold models" in flat(result.output)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"id": str}).set_index("id")
    tests = {"lr_a": [root / "a_test"], "lr_b": [root / "b_test"], "lgbm": [root / "a_test", root / "b_test"]}
    expected = 0
    for weight, member in zip(weights, members):
        frame = predict(PredictConfig(run_dir=str(member), inputs=[str(p) for p in tests[member.name]], proba=True)).frame
        expected = expected + weight * frame.set_index("id").loc[sub.index, list(CLASSES)].to_numpy()
    np.testing.assert_allclose(sub[list(CLASSES)].to_numpy(), expected, atol=1e-9)
    labels = CLASSES[sub.loc[runs["test_ids"], list(CLASSES)].to_numpy().argmax(axis=1)]
    assert (labels == runs["y_test"]).mean() > 0.6

    missing = cli("predict", tmp_path / "blend", root / "a_test", "-o", tmp_path / "bad.csv")
    assert missing.exit_code == 1
    assert "needs test embeddings made like" in flat(missing.stderr) and "(backbone b_net)" in flat(missing.stderr)
    twice = cli("predict", tmp_path / "blend", root / "a_test", root / "b_test", root / "a_train", "-o", tmp_path / "bad.csv")
    assert twice.exit_code == 1 and "pass one test embedding dir per backbone" in flat(twice.stderr)


def test_predict_on_a_blend_matches_old_runs_and_allows_a_tta_mismatch_when_told(tmp_path, runs):
    import shutil

    root = runs["root"]
    for name in ("lr_a", "lr_b"):  # runs written before manifests recorded --tta
        shutil.copytree(root / name, tmp_path / name)
        manifest_path = tmp_path / name / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        for entry in manifest["embeddings"]:
            entry["fingerprint"].pop("tta", None)
        manifest_path.write_text(json.dumps(manifest))
    assert cli("blend", tmp_path / "lr_a", tmp_path / "lr_b", "-o", tmp_path / "blend").exit_code == 0
    result = cli("predict", tmp_path / "blend", root / "a_test", root / "b_test", "-o", tmp_path / "sub.csv")
    assert result.exit_code == 0, result.output

    shutil.copytree(root / "b_test", tmp_path / "b_tta")  # the same embeddings, said to be made with --tta hflip
    manifest_path = tmp_path / "b_tta" / "_manifest.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "tta": "hflip"}))
    refused = cli("predict", tmp_path / "blend", root / "a_test", tmp_path / "b_tta", "-o", tmp_path / "bad.csv")
    assert refused.exit_code == 1
    allowed = cli("predict", tmp_path / "blend", root / "a_test", tmp_path / "b_tta", "-o", tmp_path / "tta.csv",
                  "--allow-tta-mismatch")
    assert allowed.exit_code == 0, allowed.output
    assert "allowed by --allow-tta-mismatch" in flat(allowed.stderr)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "tta.csv"), pd.read_csv(tmp_path / "sub.csv"))


def test_predict_on_a_blend_dir_from_raw_input_extracts_once_per_backbone(tmp_path, runs, make_embeddings, make_csv, monkeypatch):
    import pipelines.extract.runner as runner_module
    from pipelines.embeddings import read_embeddings

    root = runs["root"]
    assert cli("blend", root / "lr_a", root / "lr_b", root / "lgbm", "-o", tmp_path / "blend").exit_code == 0
    backbones = []

    def fake_run_extraction(config, on_progress=None):
        backbones.append(config.backbone)
        emb = read_embeddings(root / ("a_test" if config.backbone == "test_resnet" else "b_test"))
        make_embeddings(config.output, emb.ids, emb.vectors, backbone=config.backbone)

    monkeypatch.setattr(runner_module, "run_extraction", fake_run_extraction)
    listing = make_csv(tmp_path / "test.csv", id=runs["test_ids"], path=[f"{i}.jpg" for i in runs["test_ids"]])
    result = cli("predict", tmp_path / "blend", listing, "-o", tmp_path / "raw.csv")
    assert result.exit_code == 0, result.output
    assert sorted(backbones) == ["b_net", "test_resnet"]  # lgbm shares both with the logreg runs
    from_dirs = cli("predict", tmp_path / "blend", root / "a_test", root / "b_test", "-o", tmp_path / "sub.csv")
    assert from_dirs.exit_code == 0
    assert pd.read_csv(tmp_path / "raw.csv", dtype=str).equals(pd.read_csv(tmp_path / "sub.csv", dtype=str))


def test_blend_reads_the_truth_from_moved_labels_only_when_they_are_the_same(tmp_path, runs, make_csv):
    import shutil

    root = runs["root"]
    moved = tmp_path / "labels.csv"
    shutil.copy(root / "labels.csv", moved)
    (root / "labels.csv").rename(root / "labels.bak")
    try:
        lost = cli("blend", root / "lr_a", root / "lr_b", "-o", tmp_path / "blend")
        assert lost.exit_code == 1 and "pass --labels with the labels CSV they were trained on" in flat(lost.stderr)
        found = cli("blend", root / "lr_a", root / "lr_b", "-o", tmp_path / "blend", "--labels", moved)
        assert found.exit_code == 0, found.output
        other = make_csv(tmp_path / "other.csv", id=["0000"], label=["cat"])
        wrong = cli("blend", root / "lr_a", root / "lr_b", "-o", tmp_path / "blend2", "--labels", other)
        assert wrong.exit_code == 1 and "is not the labels file the runs were trained on" in flat(wrong.stderr)
    finally:
        (root / "labels.bak").rename(root / "labels.csv")


def test_nnls_falls_back_to_the_best_run_when_its_combination_scores_lower():
    from pipelines.blend import choose_weights

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    timid = np.where(y[:, None] == np.arange(2), 0.51, 0.49)  # always right, barely
    bold = np.where(y[:, None] == np.arange(2), 1.0, 0.0)  # confident, wrong on ~10% of rows
    flipped = rng.random(200) < 0.1
    bold[flipped] = 1 - bold[flipped]
    weights, fell_back = choose_weights("nnls", [timid, bold], y, "binary", 2, "accuracy")
    assert fell_back == 0 and weights.tolist() == [1.0, 0.0]  # least squares favours `bold`; accuracy does not
    weights, fell_back = choose_weights("greedy", [timid, bold], y, "binary", 2, "accuracy")
    assert fell_back is None and weights.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("method", ["greedy", "nnls"])
def test_regression_weights_average_independent_errors(method):
    from pipelines.blend import choose_weights, combine

    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    preds = [y + rng.normal(scale=0.5, size=500), y + rng.normal(scale=0.7, size=500)]
    weights, fell_back = choose_weights(method, preds, y, "regression", 0, "rmse")
    rmse = [metrics_rmse(y, p) for p in preds]
    assert fell_back is None and metrics_rmse(y, combine(preds, weights)) < min(rmse) * 0.95
    assert weights[0] > weights[1] > 0  # the less noisy run weighs more


def metrics_rmse(y, pred):
    return float(np.sqrt(np.mean((y - pred) ** 2)))
