"""Honest CV for the heads: early stopping never watches the scored fold (a recording hook sees
every row lgbm and mlp train or early-stop on), inner splits follow the run's stratification and
groups, LightGBM parameters are checked against LightGBM's own names, lgbm's defaults are sized
to the data and report per-round progress, and the default head is logreg."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.heads.base import inner_split
from pipelines.train.train import TrainConfig, train
from tests.test_chain import colour_data, write_config  # noqa: F401  (colour_data: a fixture)
from tests.test_chain import invoke as chain_invoke

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [*map(str, args)])


@pytest.fixture
def grouped(tmp_path, make_embeddings, make_csv, make_separable):
    """150 rows, 3 classes, 30 groups of 5; every feature row unique, so a row seen by a hook
    maps back to its id."""
    X, y = make_separable(150, dim=12, n_classes=3, seed=3)
    ids = [f"row{i:03d}" for i in range(150)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=[f"c{v}" for v in y],
                      group=[f"g{i % 30}" for i in range(150)])
    id_of_row = {row.tobytes(): i for row, i in zip(X, ids)}
    return {"emb": emb, "labels": labels, "id_of_row": id_of_row}


def _ids(id_of_row, X) -> set[str]:
    return {id_of_row[row.tobytes()] for row in np.asarray(X, dtype=np.float32)}


@pytest.mark.parametrize("head", ["lgbm", "mlp"])
def test_early_stopping_never_sees_the_scored_fold(tmp_path, grouped, monkeypatch, head):
    import lightgbm

    from pipelines.heads.lgbm import LGBMHead
    from pipelines.heads.mlp import MLPHead

    from pipelines.train import train as train_module

    calls = []  # per fold (tuning, then head.fit): [(rows trained on, rows early-stopped on)]
    head_cls = LGBMHead if head == "lgbm" else MLPHead
    fit, tune, tuned = head_cls.fit, train_module.tune, []

    def recording_tune(*args, **kwargs):  # a fold starts with tuning: its candidates count too
        calls.append([])
        tuned.append(True)
        return tune(*args, **kwargs)

    def recording_fit(self, *args, **kwargs):
        if not tuned:
            calls.append([])
        tuned.clear()
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(train_module, "tune", recording_tune)
    monkeypatch.setattr(head_cls, "fit", recording_fit)
    if head == "lgbm":
        lgb_train = lightgbm.train

        def recording_train(params, train_set, *args, valid_sets=None, **kwargs):
            watched = [v.data for v in valid_sets or []]
            calls[-1].append((_ids(grouped["id_of_row"], train_set.data),
                              set().union(*(_ids(grouped["id_of_row"], X) for X in watched))))
            return lgb_train(params, train_set, *args, valid_sets=valid_sets, **kwargs)

        monkeypatch.setattr(lightgbm, "train", recording_train)
    else:
        inputs, predict = MLPHead._inputs, MLPHead.predict
        predicting = []

        def recording_inputs(self, X):
            if not predicting:  # rows the network trains or early-stops on (not what it predicts)
                calls[-1].append((_ids(grouped["id_of_row"], X), set()))
            return inputs(self, X)

        def flagged_predict(self, X):
            predicting.append(True)
            try:
                return predict(self, X)
            finally:
                predicting.pop()

        monkeypatch.setattr(MLPHead, "_inputs", recording_inputs)
        monkeypatch.setattr(MLPHead, "predict", flagged_predict)

    run = tmp_path / "run"
    extra = ["--param", "learning_rate=0.3"] if head == "lgbm" else ["--param", "hidden=32", "--param", "epochs=8"]
    result = cli("train-head", grouped["emb"], "--labels", grouped["labels"], "-o", run, "--head", head,
                 "--folds", "3", "--group-col", "group", *extra)
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(run / "folds.csv", dtype={"id": str})
    groups = pd.read_csv(grouped["labels"], dtype=str).set_index("id")["group"]
    assert len(calls) == 3
    for k, fold_calls in enumerate(calls):
        scored = set(folds["id"][folds["fold"] == k])
        training_part = set(folds["id"][folds["fold"] != k])
        assert fold_calls, f"fold {k}: the hook saw nothing"
        seen = set().union(*(trained | watched for trained, watched in fold_calls))
        assert not seen & scored, f"fold {k}: {len(seen & scored)} scored rows were given to the head"
        assert seen == training_part  # the refit uses the whole training part
        if head == "lgbm":
            trained, watched = fold_calls[0]  # a tuning candidate's early-stopped fit: inner-train, inner-validation
            assert watched and not trained & watched and trained | watched == training_part
            assert not set(groups[list(trained)]) & set(groups[list(watched)])  # groups kept whole
            assert fold_calls[-1] == (training_part, set())  # then the refit, with nothing watched
        else:  # mlp: inner-train and inner-validation inputs, then the whole part for the refit
            assert any(rows < training_part for rows, _ in fold_calls)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["head"]["name"] == head


def test_inner_split_is_stratified_grouped_and_multilabel_aware():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [40, 40, 20, 10])
    inner, held = inner_split("multiclass", y, 4, seed=1)
    assert sorted(np.concatenate([inner, held])) == list(range(len(y)))
    assert np.bincount(y[held], minlength=4).tolist() == [8, 8, 4, 2]  # each class keeps its share

    groups = np.repeat(np.arange(22), 5)
    inner, held = inner_split("multiclass", y, 4, seed=1, groups=groups)
    assert not set(groups[inner]) & set(groups[held])

    Y = (rng.random((120, 3)) < [0.5, 0.2, 0.05]).astype(np.int8)
    inner, held = inner_split("multilabel", Y, 3, seed=1)
    assert (Y[held].sum(axis=0) > 0).all() and abs(len(held) - 24) <= 2  # even the rare label is held out

    assert inner_split("multiclass", np.array([0, 1]), 2, seed=1) is None  # too small: no split


def test_lightgbm_parameter_typo_is_refused_with_the_nearest_name(tmp_path, grouped):
    base = ("train-head", grouped["emb"], "--labels", grouped["labels"], "--head", "lgbm", "--folds", "3")
    result = cli(*base, "-o", tmp_path / "typo", "-p", "num_leave=7")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'num_leave'" in lines[0] and "num_leaves=" in lines[0], result.output
    assert not (tmp_path / "typo" / "manifest.json").exists()

    result = cli(*base, "-o", tmp_path / "value", "-p", "num_leaves=lots")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output

    # an alias is a LightGBM name too, and replaces the default instead of losing to it
    result = cli(*base, "-o", tmp_path / "alias", "-p", "max_leaves=4", "-p", "eta=0.3", "--json")
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "alias" / "manifest.json").read_text())["head"]["params"]
    assert params["max_leaves"] == 4 and "num_leaves" not in params and "learning_rate" not in params


def test_lgbm_defaults_are_sized_to_the_data_and_report_rounds(tmp_path, make_embeddings, make_csv, make_separable):
    from pipelines.heads.lgbm import COLUMNS_PER_TREE, patience_for

    X, y = make_separable(120, dim=512, n_classes=3, seed=1)
    ids = [f"r{i}" for i in range(120)]
    emb = make_embeddings(tmp_path / "emb", ids, X)
    labels = make_csv(tmp_path / "labels.csv", id=ids, label=[f"c{v}" for v in y])
    seen = []
    result = train(TrainConfig(embeddings=[str(emb)], labels=str(labels), output=str(tmp_path / "run"), head="lgbm",
                               folds=3), on_progress=lambda kind, message: seen.append((kind, message)))
    params = json.loads((tmp_path / "run" / "manifest.json").read_text())["head"]["params"]
    assert params["feature_fraction"] == pytest.approx(COLUMNS_PER_TREE / 512) and params["max_bin"] < 255
    inner_rows = round(80 * 4 / 5)
    assert abs(params["early_stopping_round"] - patience_for(inner_rows)) <= 1
    rounds = [message for kind, message in seen if kind == "round"]
    assert any(m.startswith("fold 0: round ") and "inner-valid multi_logloss" in m for m in rounds), rounds
    assert any(m.startswith("fold 2: refit round ") for m in rounds), rounds
    # rounds come inside their fold: each fold's round lines precede its score line
    kinds = [kind for kind, _ in seen]
    assert kinds.index("round") < kinds.index("fold")
    for fold in result.fold_scores:  # the refit's trees, scaled from the inner best iteration
        assert fold["best_iteration"] >= fold["inner_best_iteration"] > 0

    # a value the user sets wins over the sized default
    train(TrainConfig(embeddings=[str(emb)], labels=str(labels), output=str(tmp_path / "run2"), head="lgbm", folds=3,
                      head_params={"colsample_bytree": 0.9, "early_stopping_rounds": 7}))
    params = json.loads((tmp_path / "run2" / "manifest.json").read_text())["head"]["params"]
    assert params["colsample_bytree"] == 0.9 and "feature_fraction" not in params
    assert params["early_stopping_rounds"] == 7 and "early_stopping_round" not in params


def test_mlp_reports_epochs_inside_each_fold(tmp_path, grouped):
    seen = []
    train(TrainConfig(embeddings=[str(grouped["emb"])], labels=str(grouped["labels"]), output=str(tmp_path / "run"),
                      head="mlp", folds=3, head_params={"hidden": [16], "epochs": 4}),
          on_progress=lambda kind, message: seen.append((kind, message)))
    rounds = [message for kind, message in seen if kind == "round"]
    assert "fold 1: epoch 1/4: inner-valid loss" in " | ".join(rounds)


def test_the_default_head_is_logreg(tmp_path, grouped):
    result = cli("train-head", grouped["emb"], "--labels", grouped["labels"], "-o", tmp_path / "run", "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["head"] == "logreg"
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["head"]["name"] == "logreg"
    assert TrainConfig(embeddings=["e"], labels="l", output="o").head == "logreg"


def test_lgbm_threads_use_only_idle_cores(monkeypatch):
    from pipelines.heads import base as lgbm  # threads_for lives in heads.base (lgbm and logreg share it)

    monkeypatch.setattr(lgbm, "available_cores", lambda: 8)
    monkeypatch.setattr(lgbm.os, "getloadavg", lambda: (16.0, 16.0, 16.0))  # every core busy with others' work
    assert lgbm.threads_for(2000, 1280) == 1
    monkeypatch.setattr(lgbm.os, "getloadavg", lambda: (3.0, 3.0, 3.0))  # this process + 2 others
    assert lgbm.threads_for(2000, 1280) == 6
    assert lgbm.threads_for(100, 64) == 1  # tiny data: one thread whatever the load
    assert lgbm.threads_for(2000, 1280, n_jobs=3) == 3


def test_olymp_run_keeps_per_round_progress_off_its_output(tmp_path, colour_data):
    """Inside `olymp run`, a head's rounds/epochs feed the step's spinner, never one line each."""
    config = write_config(tmp_path, colour_data)
    result = chain_invoke("run", config, "--set", "head.name=mlp", "--set", "head.params.epochs=3",
                          "--set", "head.params.hidden=8")
    assert "fold 0:" in result.output  # the fold scores still print
    assert "inner-valid" not in result.output and "epoch 1/3" not in result.output, result.output
