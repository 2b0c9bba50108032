"""train-head's feature options (--normalize, --pca over several sources), --seeds and --folds-from,
through the CLI and the library: fitted inside each fold only, saved without pickle, applied again by predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.train.features import FeatureSpec, FeatureTransform
from pipelines.heads import get_head
from pipelines.predict.predict import predict
from pipelines.predict.config import PredictConfig

runner = CliRunner()
CLASSES = np.array(["cat", "dog", "owl"])


def cli(*args):
    return runner.invoke(app, [*map(str, args)])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def two_sources(tmp_path, make_embeddings, make_csv, make_separable):
    """A wide, large-valued source (24-d) and a narrow one (4-d), 150 labelled rows."""
    X, y = make_separable(150, dim=10, n_classes=3, seed=11)
    noise = np.random.default_rng(1).normal(size=(150, 18)).astype(np.float32)
    wide = np.hstack([X[:, :6] * 50 + 7, noise * 50])
    narrow = X[:, 6:]
    ids = [f"r{i:03d}" for i in range(150)]
    a = make_embeddings(tmp_path / "wide", ids, wide)
    b = make_embeddings(tmp_path / "narrow", ids, narrow, backbone="narrow_net")
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=CLASSES[y])
    return {"a": a, "b": b, "labels": labels, "ids": ids, "wide": wide, "narrow": narrow, "y": y}


def folds_of(run_dir):
    return pd.read_csv(run_dir / "folds.csv", dtype={"id": str})


def test_standard_balances_sources_and_l2_gives_unit_norm_blocks():
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(5, 100, size=(80, 32)), rng.normal(0, 0.01, size=(80, 2))])
    Z = FeatureTransform.fit(X, [32, 2], FeatureSpec("standard")).transform(X)
    # each source carries total variance 1, whatever its width and scale
    assert Z[:, :32].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
    assert Z[:, 32:].var(axis=0).sum() == pytest.approx(1.0, rel=1e-4)
    L = FeatureTransform.fit(X, [32, 2], FeatureSpec("l2")).transform(X)
    np.testing.assert_allclose(np.linalg.norm(L[:, :32], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(L[:, 32:], axis=1), 1.0, rtol=1e-5)


def test_pca_normalize_and_predict_apply_the_same_fitted_transform(tmp_path, two_sources):
    s = two_sources
    run = tmp_path / "run"
    result = cli("train-head", s["a"], s["b"], "--labels", s["labels"], "-o", run, "--head", "logreg",
                 "--normalize", "standard", "--pca", "5", "--folds", "3")
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["features"] == {"normalize": "standard", "pca": 5, "source_dims": [24, 4],
                                    "transforms": [f"transforms/fold-{k}.npz" for k in range(3)]}
    X = np.hstack([s["wide"], s["narrow"]]).astype(np.float64)
    folds = folds_of(run)["fold"].to_numpy()
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})[list(CLASSES)].to_numpy()
    head = get_head("logreg")
    expected = np.zeros_like(oof)
    for k in range(3):
        with np.load(run / f"transforms/fold-{k}.npz", allow_pickle=False) as stored:  # plain arrays, no pickle
            mean, components = stored["mean"], stored["pca_components"]
        train_rows = folds != k
        np.testing.assert_allclose(mean, X[train_rows].mean(axis=0), rtol=1e-9)  # the training part's, not all rows'
        assert components.shape == (5, 28)
        transform = FeatureTransform.load(run / f"transforms/fold-{k}.npz")
        model = head.load(run / f"models/fold-{k}.json", "multiclass", 3)
        # the saved transform + model reproduce the OOF rows the fold predicted during training
        np.testing.assert_allclose(model.predict(transform.transform(X[~train_rows])), oof[~train_rows], atol=1e-5)
        expected += model.predict(transform.transform(X)) / 3
    # predict on the training embeddings feeds every fold model through its own transform
    out = predict(PredictConfig(run_dir=str(run), inputs=[str(s["a"]), str(s["b"])], proba=True)).frame
    np.testing.assert_allclose(out.set_index("id").loc[s["ids"], list(CLASSES)].to_numpy(), expected, atol=1e-6)
    raw_features = head.load(run / "models/fold-0.json", "multiclass", 3)
    assert raw_features.coef.shape[1] == 5  # the models were fitted on the PCA output, not raw features


def test_validation_rows_never_influence_a_folds_transform(tmp_path, two_sources, make_embeddings):
    """Leakage check: rewrite fold 0's rows wildly and train again on the same folds; fold 0's
    transform and model (fitted on the other folds) must not move, the other folds' must."""
    s = two_sources
    options = ["--head", "logreg", "--normalize", "standard", "--pca", "4", "--folds", "3"]
    clean = tmp_path / "clean"
    assert cli("train-head", s["a"], s["b"], "--labels", s["labels"], "-o", clean, *options).exit_code == 0
    rows = (folds_of(clean)["fold"] == 0).to_numpy()
    rng = np.random.default_rng(5)
    wide, narrow = s["wide"].copy(), s["narrow"].copy()
    wide[rows] = rng.normal(1000, 300, size=wide[rows].shape)
    narrow[rows] = rng.normal(-50, 20, size=narrow[rows].shape)
    a = make_embeddings(tmp_path / "wide2", s["ids"], wide)
    b = make_embeddings(tmp_path / "narrow2", s["ids"], narrow, backbone="narrow_net")
    dirty = tmp_path / "dirty"
    result = cli("train-head", a, b, "--labels", s["labels"], "-o", dirty, "--folds-from", clean, *options)
    assert result.exit_code == 0, result.output

    def arrays(run, k):
        with np.load(run / f"transforms/fold-{k}.npz", allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    same, moved = arrays(clean, 0), arrays(dirty, 0)
    for name in same:
        np.testing.assert_allclose(same[name], moved[name], rtol=1e-9, atol=1e-12)
    coef = [json.loads((run / "models/fold-0.json").read_text())["coef"] for run in (clean, dirty)]
    np.testing.assert_allclose(coef[0], coef[1], rtol=1e-6)
    assert not np.allclose(arrays(clean, 1)["mean"], arrays(dirty, 1)["mean"])  # fold 0 trains folds 1 and 2


def test_bad_feature_options_are_refused(tmp_path, two_sources):
    s = two_sources
    for args, message in [
        (["--normalize", "minmax"], "unknown --normalize 'minmax'; pass one of: none, l2, standard"),
        (["--pca", "500"], "--pca 500 asks for more components than a fold's training part allows"),
        (["--seeds", "0,x"], "--seeds '0,x' is not a comma-separated list of integers"),
        (["--seeds", "1,1"], "--seeds needs distinct integers"),
    ]:
        result = cli("train-head", s["a"], s["b"], "--labels", s["labels"], "-o", tmp_path / "bad", "--head", "logreg",
                     "--overwrite", *args)
        assert result.exit_code == 1 and message in flat(result.stderr), (args, result.output)
        assert not (tmp_path / "bad").exists()  # refused before the run dir is made


def test_seeds_average_per_seed_models(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(120, dim=8, n_classes=3, seed=4)
    ids = [f"q{i}" for i in range(120)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=CLASSES[y])
    fast = ["--head", "lgbm", "--folds", "3", "--param", "learning_rate=0.3", "--param", "bagging_fraction=0.7", "--param", "bagging_freq=1"]
    result = cli("train-head", emb, "--labels", labels, "-o", tmp_path / "all", "--seeds", "0,1,2", *fast)
    assert result.exit_code == 0, result.output
    assert "oof logloss of each seed alone:" in flat(result.output)
    singles = []
    for seed in (0, 1, 2):
        one = cli("train-head", emb, "--labels", labels, "-o", tmp_path / f"s{seed}", "--seeds", str(seed), *fast)
        assert one.exit_code == 0, one.output
        singles.append(pd.read_csv(tmp_path / f"s{seed}" / "oof.csv", dtype={"id": str})[list(CLASSES)].to_numpy())
    assert not np.allclose(singles[0], singles[1])  # the seeds do change the models
    oof = pd.read_csv(tmp_path / "all" / "oof.csv", dtype={"id": str})[list(CLASSES)].to_numpy()
    np.testing.assert_allclose(oof, np.mean(singles, axis=0), atol=1e-9)

    models = sorted(p.name for p in (tmp_path / "all" / "models").iterdir())
    assert models == [f"fold-{k}-seed-{s}.txt" for k in range(3) for s in range(3)]
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1, 2] and manifest["model_folds"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    scores = json.loads((tmp_path / "all" / "scores.json").read_text())
    assert [entry["seed"] for entry in scores["seeds"]] == [0, 1, 2]
    predicted = predict(PredictConfig(run_dir=str(tmp_path / "all"), inputs=[str(emb)], proba=True))
    assert predicted.n_models == 9


def test_seeds_on_a_deterministic_head_warn(tmp_path, two_sources):
    s = two_sources
    result = cli("train-head", s["b"], "--labels", s["labels"], "-o", tmp_path / "run", "--head", "logreg",
                 "--folds", "3", "--seeds", "0,1")
    assert result.exit_code == 0, result.output
    assert "logreg with these params is deterministic: --seeds 0,1 fit identical models" in flat(result.stderr)
    stochastic = cli("train-head", s["b"], "--labels", s["labels"], "-o", tmp_path / "saga", "--head", "logreg",
                     "--folds", "3", "--seeds", "0,1", "--param", "solver=saga", "--param", "max_iter=50")
    assert "deterministic" not in flat(stochastic.stderr)


def test_folds_from_reuses_the_fold_assignment(tmp_path, two_sources, make_csv):
    s = two_sources
    first = tmp_path / "first"
    assert cli("train-head", s["b"], "--labels", s["labels"], "-o", first, "--head", "logreg", "--folds", "4",
               "--seed", "1").exit_code == 0
    second = tmp_path / "second"
    result = cli("train-head", s["a"], s["b"], "--labels", s["labels"], "-o", second, "--head", "logreg",
                 "--seed", "99", "--folds-from", first)
    assert result.exit_code == 0, result.output
    assert folds_of(first).equals(folds_of(second))
    manifests = [json.loads((run / "manifest.json").read_text()) for run in (first, second)]
    assert manifests[0]["fold_hash"] == manifests[1]["fold_hash"] and manifests[1]["folds"] == 4
    assert manifests[1]["folds_from"] == str(first.resolve())
    other = cli("train-head", s["b"], "--labels", s["labels"], "-o", tmp_path / "other", "--head", "logreg",
                "--folds", "4", "--seed", "2")
    assert json.loads((tmp_path / "other" / "manifest.json").read_text())["fold_hash"] != manifests[0]["fold_hash"]
    assert other.exit_code == 0

    fewer = make_csv(tmp_path / "fewer.csv", id=s["ids"][:140], label=CLASSES[s["y"][:140]])
    refused = cli("train-head", s["b"], "--labels", fewer, "-o", tmp_path / "bad", "--folds-from", first)
    assert refused.exit_code == 1
    assert f"--folds-from {first}: ids differ (0 only in this run, 10 only in {first})" in flat(refused.stderr)
    assert "or drop --folds-from" in flat(refused.stderr)
