"""`olymp blend` through the CLI and the library: weights on OOF predictions, never below the best
input, refusals naming the run that differs, and `olymp predict` on a blend directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.metrics import GREATER_IS_BETTER
from pipelines.predict.predict import predict
from pipelines.predict.config import PredictConfig

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


# --------------------------------------------------------------------------- an independent cross-fit

def score_of(metric, y, pred):
    """The metric, written from scikit-learn (not pipelines.data.metrics)."""
    from sklearn.metrics import accuracy_score, log_loss

    if metric == "logloss":
        proba = np.clip(pred, 1e-15, 1.0)
        return log_loss(y, proba / proba.sum(axis=1, keepdims=True), labels=np.arange(pred.shape[1]))
    return accuracy_score(y, pred.argmax(axis=1))


def weights_on(method, preds, y, metric, iterations=50):
    """Greedy ensemble selection with replacement (best prefix) or NNLS on one-hot truth, then the
    fallback to the best single member when the combination scores below it, all on these rows."""
    from scipy.optimize import nnls

    greater = metric == "accuracy"
    better = (lambda a, b: a > b) if greater else (lambda a, b: a < b)
    singles = [score_of(metric, y, p) for p in preds]
    best = int(np.argmax(singles) if greater else np.argmin(singles))
    if method == "greedy":
        counts = np.zeros(len(preds))
        counts[best] = 1
        total, best_score, best_counts = preds[best].copy(), singles[best], counts.copy()
        for _ in range(iterations - 1):
            candidates = [score_of(metric, y, (total + p) / (counts.sum() + 1)) for p in preds]
            choice = int(np.argmax(candidates) if greater else np.argmin(candidates))  # first among equals
            total, counts[choice] = total + preds[choice], counts[choice] + 1
            if better(candidates[choice], best_score):
                best_score, best_counts = candidates[choice], counts.copy()
        weights = best_counts / best_counts.sum()
    else:
        A = np.column_stack([p.reshape(-1) for p in preds])
        weights, _ = nnls(A, np.eye(preds[0].shape[1])[y].reshape(-1))
        weights = weights / weights.sum()
    if better(singles[best], score_of(metric, y, sum(w * p for w, p in zip(weights, preds)))):
        weights = np.eye(len(preds))[best]
    return weights


def cross_fitted(method, preds, y, folds, metric):
    """Fold k's rows blended with weights chosen on the other folds' rows; and those weights."""
    blended, per_fold = np.zeros_like(preds[0]), []
    for k in np.unique(folds):
        fit = folds != k
        weights = weights_on(method, [p[fit] for p in preds], y[fit], metric)
        blended[folds == k] = sum(w * p[folds == k] for w, p in zip(weights, preds))
        per_fold.append(weights)
    return blended, per_fold


def member_arrays(members, labels_csv):
    """Members' OOF probabilities in one id order, the folds and the encoded truth."""
    frames = [pd.read_csv(m / "oof.csv", dtype={"id": str}).set_index("id") for m in members]
    order = frames[0].index
    truth = pd.read_csv(labels_csv, dtype={"id": str}).set_index("id").loc[order, "label"]
    y = np.searchsorted(CLASSES, truth.to_numpy(dtype=object).astype(str))
    return [f.loc[order, list(CLASSES)].to_numpy() for f in frames], frames[0]["fold"].to_numpy(), y, order


def noise_runs(run, where, n, seed):
    """`n` copies of `run` whose OOF probabilities are pure noise (same ids, folds, labels)."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(n):
        noise = where / f"noise_{i}"
        noise.mkdir()
        (noise / "manifest.json").write_text((run / "manifest.json").read_text())
        oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
        oof[list(CLASSES)] = rng.dirichlet(np.ones(3) * 0.5, size=len(oof))
        oof.to_csv(noise / "oof.csv", index=False)
        made.append(noise)
    return made


@pytest.mark.parametrize("method", ["greedy", "nnls"])
def test_blend_reports_the_cross_fitted_score_never_claiming_to_beat_the_best_input(tmp_path, runs, method):
    root = runs["root"]
    members = [root / "lr_a", root / "lr_b", root / "lgbm"]
    result = cli("blend", *members, "-o", tmp_path / "blend", "--method", method, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    metric = summary["metric"]
    assert metric == "logloss" and not GREATER_IS_BETTER[metric]

    preds, folds, y, order = member_arrays(members, root / "labels.csv")
    blended, fold_weights = cross_fitted(method, preds, y, folds, metric)
    assert summary["oof"][metric] == pytest.approx(score_of(metric, y, blended), rel=1e-9)
    assert summary["oof"]["accuracy"] == pytest.approx(score_of("accuracy", y, blended), rel=1e-9)
    # judged cross-fitted, the blend beats every input, or the warning names the run to submit instead
    best_input = min(member["oof"][metric] for member in summary["members"])
    if summary["oof"][metric] >= best_input:
        best_run = min(summary["members"], key=lambda member: member["oof"][metric])["run"]
        assert any("out of sample the blend does not beat it" in w and best_run in w for w in summary["warnings"])
    np.testing.assert_allclose([row["weights"] for row in summary["cross_fit"]], fold_weights, atol=1e-9)
    weights = np.array([member["weight"] for member in summary["members"]])
    np.testing.assert_allclose(weights, weights_on(method, preds, y, metric), atol=1e-9)  # saved: fitted on all rows
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    assert (weights > 0).sum() >= 2  # a real blend, not one run

    blend_dir = tmp_path / "blend"
    manifest = json.loads((blend_dir / "manifest.json").read_text())
    assert manifest["kind"] == "blend" and manifest["method"] == method
    assert [m["absolute_path"] for m in manifest["members"]] == [str(p.resolve()) for p in members]
    assert [m["weight"] for m in manifest["members"]] == pytest.approx(weights.tolist())
    np.testing.assert_allclose([row["weights"] for row in manifest["cross_fit"]], fold_weights, atol=1e-9)
    assert "cross-fitted" in manifest["provenance"]["blend"]
    # oof.csv holds the cross-fitted blend (member rows matched by id)
    np.testing.assert_allclose(oof_values(blend_dir).loc[order].to_numpy(), blended, atol=1e-9)
    scores = json.loads((blend_dir / "scores.json").read_text())
    assert scores["oof"][metric] == pytest.approx(summary["oof"][metric]) and len(scores["folds"]) == 4
    for fold in scores["folds"]:
        rows = folds == fold["fold"]
        assert fold[metric] == pytest.approx(score_of(metric, y[rows], blended[rows]), rel=1e-9)
    assert scores["provenance"] == manifest["provenance"]


@pytest.mark.parametrize(("method", "metric"), [("greedy", "accuracy"), ("nnls", "logloss")])
def test_blend_score_is_not_measured_on_the_rows_that_chose_the_weights(tmp_path, runs, method, metric):
    """Eight runs of pure noise next to one real run: weights fitted on the scored rows find
    'signal' in the noise; the reported (cross-fitted) score does not."""
    root = runs["root"]
    members = [root / "lr_a", *noise_runs(root / "lr_a", tmp_path, 8, seed=5)]
    result = cli("blend", *members, "-o", tmp_path / "blend", "--method", method, "--metric", metric, "--json")
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)["oof"][metric]

    preds, folds, y, _ = member_arrays(members, root / "labels.csv")
    in_sample = score_of(metric, y, sum(w * p for w, p in zip(weights_on(method, preds, y, metric), preds)))
    blended, _ = cross_fitted(method, preds, y, folds, metric)
    assert reported == pytest.approx(score_of(metric, y, blended), rel=1e-9)
    # the old, in-sample number flattered the blend
    assert reported < in_sample if GREATER_IS_BETTER[metric] else reported > in_sample


def test_blend_warns_when_out_of_sample_it_does_not_beat_the_best_run(tmp_path, runs):
    root = runs["root"]
    members = [root / "lr_a", *noise_runs(root / "lr_a", tmp_path, 6, seed=11)]
    result = cli("blend", *members, "-o", tmp_path / "blend", "--metric", "accuracy", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    best = max(member["oof"]["accuracy"] for member in summary["members"])
    # six noise runs: fitted on 3/4 of the rows, greedy picks some and loses on the last quarter
    assert summary["oof"]["accuracy"] < best
    warning = " ".join(summary["warnings"])
    assert "out of sample the blend does not beat it" in warning and str(root / "lr_a") in warning


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
    from pipelines.data.embeddings import read_embeddings

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
    from pipelines.ensemble.blend import choose_weights

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
    from pipelines.ensemble.blend import choose_weights, combine

    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    preds = [y + rng.normal(scale=0.5, size=500), y + rng.normal(scale=0.7, size=500)]
    weights, fell_back = choose_weights(method, preds, y, "regression", 0, "rmse")
    rmse = [metrics_rmse(y, p) for p in preds]
    assert fell_back is None and metrics_rmse(y, combine(preds, weights)) < min(rmse) * 0.95
    assert weights[0] > weights[1] > 0  # the less noisy run weighs more


def metrics_rmse(y, pred):
    return float(np.sqrt(np.mean((y - pred) ** 2)))


# --------------------------------------------------------------------------- multilabel thresholds

TAGS = np.array(["bird", "car", "dog", "rain"])
GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)  # the candidates olymp tries (metrics.THRESHOLD_GRID)


def tuned(Y, proba):
    """The grid threshold with the best micro-F1 = 2 TP / (predicted + true positives), the lowest among equals."""
    decided = proba[None] >= GRID[:, None, None]  # (thresholds, rows, labels)
    tp = (decided & (Y[None] > 0)).sum(axis=(1, 2))
    f1 = 2 * tp / (decided.sum(axis=(1, 2)) + Y.sum())
    return float(GRID[int(np.argmax(f1))])


def f1s(Y, proba, at):
    from sklearn.metrics import f1_score

    decided = (proba >= np.asarray(at).reshape(-1, 1)).astype(int)
    return {f"f1_{avg}": f1_score(Y, decided, average=avg, zero_division=0) for avg in ("micro", "macro")}


def cross_fitted_thresholds(Y, proba, folds):
    return np.array([tuned(Y[folds != k], proba[folds != k]) for k in folds])


@pytest.fixture(scope="module")
def tag_runs(tmp_path_factory, make_embeddings, make_csv):
    """Two logreg multilabel runs (3 folds) on halves of noisy features, space-separated tags."""
    root = tmp_path_factory.mktemp("tags")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 8)).astype(np.float32)
    Y = (X[:, :4] + X[:, 4:] + rng.normal(scale=1.0, size=(150, 4)) > 0.6).astype(int)
    ids = [f"clip{i:03d}" for i in range(150)]
    make_embeddings(root / "a", ids, X[:, :4] + X[:, 4:] * 0.3)
    make_embeddings(root / "b", ids, X[:, 4:] + X[:, :4] * 0.3, backbone="b_net")
    make_csv(root / "tags.csv", fname=ids, tags=[" ".join(TAGS[row.astype(bool)]) for row in Y])
    base = ["--labels", root / "tags.csv", "--id-col", "fname", "--target-col", "tags", "--label-sep", " ",
            "--folds", "3", "--head", "logreg"]
    for args in ([root / "a", "-o", root / "lr_a"], [root / "b", "-o", root / "lr_b", "--folds-from", root / "lr_a"]):
        result = cli("train-head", *args, *base)
        assert result.exit_code == 0, result.output
    return {"root": root, "Y": Y, "ids": ids}


def tag_arrays(run_dir, tag_runs, order=None):
    oof = pd.read_csv(run_dir / "oof.csv", dtype={"id": str}).set_index("id")
    order = oof.index if order is None else order
    Y = pd.DataFrame(tag_runs["Y"], index=tag_runs["ids"], columns=TAGS).loc[order].to_numpy()
    return oof.loc[order, list(TAGS)].to_numpy(), oof.loc[order, "fold"].to_numpy(), Y, order


def test_train_head_multilabel_f1_is_cross_fitted_and_the_saved_threshold_uses_every_row(tag_runs):
    run = tag_runs["root"] / "lr_a"
    proba, folds, Y, _ = tag_arrays(run, tag_runs)
    scores = json.loads((run / "scores.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    at = cross_fitted_thresholds(Y, proba, folds)
    for name, value in f1s(Y, proba, at).items():
        assert scores["oof"][name] == pytest.approx(value, rel=1e-9)
    for fold in scores["folds"]:
        rows = folds == fold["fold"]
        assert fold["threshold"] == tuned(Y[~rows], proba[~rows])
        for name, value in f1s(Y[rows], proba[rows], at[rows]).items():
            assert fold[name] == pytest.approx(value, rel=1e-9)
    assert manifest["threshold"] == scores["threshold"] == tuned(Y, proba)  # what predict uses: all OOF rows
    assert manifest["threshold_source"] == "cross-fitted" and "cross-fitted" in scores["provenance"]["threshold"]
    assert "never saw the row" in scores["provenance"]["oof"]
    assert manifest["provenance"] == scores["provenance"]
    # in-sample, the tuned threshold would score at least as well (it is the best on those very rows)
    assert f1s(Y, proba, tuned(Y, proba))["f1_micro"] >= scores["oof"]["f1_micro"]

    shown = cli("report", run)
    assert shown.exit_code == 0, shown.output
    how = "how: oof: out-of-fold predictions of models that never saw the row; threshold: cross-fitted over the folds"
    assert how in flat(shown.output)


def test_a_given_threshold_is_used_for_every_fold(tmp_path, tag_runs):
    root = tag_runs["root"]
    result = cli("train-head", root / "a", "-o", tmp_path / "given", "--labels", root / "tags.csv", "--id-col", "fname",
                 "--target-col", "tags", "--label-sep", " ", "--head", "logreg", "--folds-from", root / "lr_a",
                 "--threshold", "0.4")
    assert result.exit_code == 0, result.output
    proba, folds, Y, _ = tag_arrays(tmp_path / "given", tag_runs)
    scores = json.loads((tmp_path / "given" / "scores.json").read_text())
    assert scores["oof"]["f1_micro"] == pytest.approx(f1s(Y, proba, np.full(len(Y), 0.4))["f1_micro"], rel=1e-9)
    assert all(fold["threshold"] == 0.4 for fold in scores["folds"]) and "--threshold" in scores["provenance"]["threshold"]


def test_multilabel_blend_threshold_and_weights_are_cross_fitted(tmp_path, tag_runs):
    from scipy.optimize import nnls
    from sklearn.metrics import label_ranking_average_precision_score

    root = tag_runs["root"]
    members = [root / "lr_a", root / "lr_b"]
    result = cli("blend", *members, "-o", tmp_path / "blend", "--method", "nnls", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["metric"] == "lwlrap"
    first, folds, Y, order = tag_arrays(members[0], tag_runs)
    preds = [first, tag_arrays(members[1], tag_runs, order)[0]]

    def lwlrap(Y, proba):
        return label_ranking_average_precision_score(Y, proba, sample_weight=Y.sum(axis=1))

    def fit(rows):
        weights, _ = nnls(np.column_stack([p[rows].reshape(-1) for p in preds]), Y[rows].reshape(-1).astype(float))
        weights = weights / weights.sum()
        singles = [lwlrap(Y[rows], p[rows]) for p in preds]
        if max(singles) > lwlrap(Y[rows], sum(w * p[rows] for w, p in zip(weights, preds))):
            weights = np.eye(2)[int(np.argmax(singles))]
        return weights, tuned(Y[rows], sum(w * p[rows] for w, p in zip(weights, preds)))

    blended, at = np.zeros_like(first), np.zeros(len(Y))
    for k in np.unique(folds):
        weights, threshold = fit(folds != k)
        blended[folds == k] = sum(w * p[folds == k] for w, p in zip(weights, preds))
        at[folds == k] = threshold
    assert summary["oof"]["lwlrap"] == pytest.approx(lwlrap(Y, blended), rel=1e-9)
    for name, value in f1s(Y, blended, at).items():
        assert summary["oof"][name] == pytest.approx(value, rel=1e-9)
    assert [row["threshold"] for row in summary["cross_fit"]] == [at[folds == k][0] for k in np.unique(folds)]
    weights, threshold = fit(np.ones(len(Y), dtype=bool))
    manifest = json.loads((tmp_path / "blend" / "manifest.json").read_text())
    assert manifest["threshold"] == threshold and [m["weight"] for m in manifest["members"]] == pytest.approx(weights)
    # each member's F1 is scored the same honest way (thresholds cross-fitted over its own OOF rows)
    for member, pred in zip(summary["members"], preds):
        assert member["oof"]["f1_micro"] == pytest.approx(f1s(Y, pred, cross_fitted_thresholds(Y, pred, folds))["f1_micro"])
    assert "threshold" in manifest["provenance"]


# --------------------------------------------------------------------------- corrupt inputs: one line, exit 1

def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def edited(edit):
    """oof.csv content with `edit(frame)` applied to its rows."""
    import io

    def apply(text):
        frame = pd.read_csv(io.StringIO(text), dtype={"id": str})
        edit(frame)
        return frame.to_csv(index=False)

    return apply


def set_cell(row, column, value):
    def edit(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return edited(edit)


CORRUPT_MEMBER = {  # case -> file, new content (bytes, or made from the old text), what the one line says
    "oof_empty": ("oof.csv", lambda old: "", "is empty"),
    "oof_binary": ("oof.csv", lambda old: "\x00\x01\x02\n\x03,\x04", "has columns"),
    "oof_header_only": ("oof.csv", lambda old: old.splitlines()[0] + "\n", "has no rows"),
    "oof_missing_column": ("oof.csv", edited(lambda frame: frame.pop("owl")), "has columns"),
    "oof_text_value": ("oof.csv", set_cell(3, "cat", "high"), "non-numeric value"),
    "oof_inf_value": ("oof.csv", set_cell(2, "owl", "inf"), "NaN or infinite"),
    "oof_nan_value": ("oof.csv", set_cell(0, "dog", "nan"), "NaN"),
    "oof_bad_fold": ("oof.csv", set_cell(4, "fold", 0.5), "fold"),
    "oof_repeated_id": ("oof.csv", set_cell(1, "id", "0000"), "repeats id"),
    "oof_truncated": ("oof.csv", lambda old: old[: len(old) // 2 - 3], "oof.csv"),
    "manifest_not_json": ("manifest.json", lambda old: old[: len(old) // 2], "is not valid JSON"),
    "manifest_list": ("manifest.json", lambda old: "[1, 2]", "holds no JSON object"),
    "manifest_no_task": ("manifest.json", lambda old: json.dumps({**json.loads(old), "task": None}), "lacks a valid task"),
    "manifest_no_labels": ("manifest.json", lambda old: json.dumps({**json.loads(old), "labels": 3}), "labels"),
    "manifest_binary": ("manifest.json", b"\xff\xfe\x00garbage", "is unreadable"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MEMBER))
def test_a_corrupt_member_file_is_one_line_naming_it(tmp_path, runs, case):
    import shutil

    root = runs["root"]
    name, corrupt, message = CORRUPT_MEMBER[case]
    member = tmp_path / "member"
    shutil.copytree(root / "lr_b", member)
    if isinstance(corrupt, bytes):
        (member / name).write_bytes(corrupt)
    else:
        (member / name).write_text(corrupt((member / name).read_text()))
    result = cli("blend", root / "lr_a", member, "-o", tmp_path / "blend")
    one_line_error(result, str(member), message)
    assert "train-head" in result.stderr  # the fix: rebuild the run
    assert not (tmp_path / "blend").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "holds no JSON object"),
        ('{"kind": "blend", "task": "multiclass", "prior": [0.3, 0.3, 0.4], "members": [{"path": 3}]}', "no valid members"),
        ('{"kind": "blend", "task": "multiclass", "prior": [1], "members": '
         '[{"path": "a", "absolute_path": "/a", "weight": -1}]}', "no valid members"),
        ('{"kind": "blend", "task": "multiclass", "prior": [1], "members": '
         '[{"path": "a", "absolute_path": "/a", "weight": 0}]}', "every member weight 0"),
        ('{"kind": "blend", "members": [{"path": "a", "absolute_path": "/a", "weight": 1}]}', "lacks a valid task"),
    ],
)
def test_a_corrupt_blend_manifest_is_one_line_for_predict_report_and_overwrite(tmp_path, runs, content, message):
    root = runs["root"]
    blend_dir = tmp_path / "blend"
    assert cli("blend", root / "lr_a", root / "lr_b", "-o", blend_dir).exit_code == 0
    (blend_dir / "manifest.json").write_text(content)
    one_line_error(cli("predict", blend_dir, root / "a_test", root / "b_test", "-o", tmp_path / "sub.csv"),
                   str(blend_dir), message)
    assert not (tmp_path / "sub.csv").exists()
    if content in ("{", "[]"):  # unreadable: olymp cannot tell it made this folder, so it is kept
        one_line_error(cli("blend", root / "lr_a", root / "lr_b", "-o", blend_dir, "--overwrite"), str(blend_dir))
    else:
        one_line_error(cli("report", blend_dir), str(blend_dir), message)


def test_report_shows_a_blend_and_how_its_numbers_were_obtained(tmp_path, runs):
    root = runs["root"]
    made = cli("blend", root / "lr_a", root / "lr_b", root / "lgbm", "-o", tmp_path / "blend", "--json")
    assert made.exit_code == 0, made.output
    shown = cli("report", tmp_path / "blend", "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["oof"] == pytest.approx(json.loads(made.stdout)["oof"]) and len(report["folds"]) == 4
    table = cli("report", tmp_path / "blend")
    assert "blend (greedy)" in table.output
    assert ("how: oof: out-of-fold predictions of models that never saw the row; "
            "blend: weights cross-fitted over the folds") in flat(table.output)


def test_runs_with_labels_from_folders_blend(tmp_path, make_embeddings, make_separable):
    X, y = make_separable(90, dim=6, n_classes=3, seed=4)
    ids = [f"{CLASSES[k]}/img{i:03d}" for i, k in enumerate(y)]  # the class is the parent folder
    emb = make_embeddings(tmp_path / "emb", ids, X)
    for name, extra in (("lr", []), ("lr_c", ["-p", "C=0.05", "--folds-from", tmp_path / "lr"])):
        result = cli("train-head", emb, "--labels-from-folders", "-o", tmp_path / name, "--head", "logreg", "--folds", "3", *extra)
        assert result.exit_code == 0, result.output
    result = cli("blend", tmp_path / "lr", tmp_path / "lr_c", "-o", tmp_path / "blend", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["oof"]["accuracy"] > 0.8
