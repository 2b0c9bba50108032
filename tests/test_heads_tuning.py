"""Heads that tune themselves inside each fold (--tune) and `--head auto`, through the CLI and the library."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.core.errors import ConfigError
from pipelines.heads import tuning
from pipelines.heads.tuning import TuneSpec
from pipelines.train.train import TrainConfig, train

runner = CliRunner()


def train_cli(*args):
    return runner.invoke(app, ["train-head", *map(str, args)])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def noisy(tmp_path, make_embeddings, make_csv):
    """Few rows, many features, each shifted a little by the class: strong regularization
    (close to the class-mean difference) clearly wins over C = 1, which fits the noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    X = (rng.normal(size=(150, 300)) + (2 * y[:, None] - 1) * 0.05).astype(np.float32)
    ids = [f"r{i:03d}" for i in range(150)]
    emb = make_embeddings(tmp_path / "noisy", ids, X)
    labels = make_csv(tmp_path / "noisy.csv", id=ids, label=np.array(["no", "yes"])[y])
    return emb, labels, X


@pytest.fixture
def xor(tmp_path, make_embeddings, make_csv):
    """A class decided by the sign of x0 * x1: no linear head can find it, an MLP or trees can."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(240, 4)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    ids = [f"x{i:03d}" for i in range(240)]
    emb = make_embeddings(tmp_path / "xor", ids, X)
    labels = make_csv(tmp_path / "xor.csv", id=ids, label=np.array(["a", "b"])[y])
    return emb, labels


def scores(run_dir):
    return json.loads((run_dir / "scores.json").read_text())


def test_the_tuned_score_never_sees_the_outer_folds_rows(tmp_path, noisy, monkeypatch):
    emb, labels, X = noisy
    seen = []
    search = tuning.run_search

    def recording(head_cls, inner, *args):
        scored_on = []
        score = inner.score

        def recording_score(y_held, pred):
            scored_on.append(len(y_held))
            return score(y_held, pred)

        inner.score = recording_score
        result = search(head_cls, inner, *args)
        seen.append((inner.X.copy(), inner.fit_rows, inner.held_rows, scored_on))
        return result

    monkeypatch.setattr(tuning, "run_search", recording)
    train(TrainConfig(embeddings=[str(emb)], labels=str(labels), output=str(tmp_path / "run"), folds=3))
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", dtype={"id": str})
    ids = [f"r{i:03d}" for i in range(150)]
    fold_of = dict(zip(folds["id"], folds["fold"]))
    row_of = {X[i].tobytes(): fold_of[ids[i]] for i in range(len(ids))}
    assert len(seen) == 3  # one search per outer fold
    for k, (inner_X, fit_rows, held_rows, scored_on) in enumerate(seen):
        folds_seen = {row_of[row.tobytes()] for row in inner_X}
        assert k not in folds_seen and folds_seen == {0, 1, 2} - {k}  # the training part, whole, and only it
        assert len(inner_X) == int((folds["fold"] != k).sum())
        assert not set(fit_rows) & set(held_rows) and scored_on and set(scored_on) == {len(held_rows)}


def test_tune_auto_picks_strong_regularization_where_it_clearly_wins(tmp_path, noisy):
    emb, labels, _ = noisy
    args = ["--labels", labels, "--folds", "3", "--metric", "logloss", "--json"]
    tuned = train_cli(emb, "-o", tmp_path / "tuned", *args, "-p", "scaling=standard")
    untuned = train_cli(emb, "-o", tmp_path / "untuned", *args, "--tune", "off")
    assert tuned.exit_code == 0 and untuned.exit_code == 0, tuned.output + untuned.output
    summary = json.loads(tuned.stdout)
    chosen = [fold["params"]["C"] for fold in summary["tuning"]]
    assert len(chosen) == 3 and max(chosen) <= 0.05, chosen  # C = 1 is the default: 20x weaker or more
    assert all("scaling" not in fold["params"] and fold["fixed"] == ["scaling"] for fold in summary["tuning"])
    assert summary["oof"]["logloss"] < json.loads(untuned.stdout)["oof"]["logloss"] - 0.1
    assert json.loads(untuned.stdout)["tuning"] == [None, None, None]
    model = json.loads((tmp_path / "tuned" / "models" / "fold-0.json").read_text())
    assert model["params"]["C"] == chosen[0]  # the saved fold model is the tuned one
    predicted = runner.invoke(app, ["predict", str(tmp_path / "tuned"), str(emb), "-o", str(tmp_path / "sub.csv")])
    assert predicted.exit_code == 0, predicted.output


def test_a_fixed_param_leaves_the_search(tmp_path, noisy):
    emb, labels, _ = noisy
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--folds", "3", "-p", "C=0.5", "--json")
    assert result.exit_code == 0, result.output
    for fold in json.loads(result.stdout)["tuning"]:
        assert fold["fixed"] == ["C"]
        assert all("C" not in candidate["params"] for candidate in fold["candidates"])
        assert {candidate["params"].get("scaling", "standard") for candidate in fold["candidates"]} == {"standard", "l2", "none"}
    for k in range(3):
        assert json.loads((tmp_path / "run" / "models" / f"fold-{k}.json").read_text())["params"]["C"] == 0.5


def test_every_param_fixed_means_nothing_to_tune(tmp_path, noisy):
    emb, labels, _ = noisy
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--folds", "3", "-p", "C=0.5",
                       "-p", "scaling=l2", "--json")
    assert result.exit_code == 0, result.output
    assert all("nothing left to tune" in fold["skipped"] for fold in json.loads(result.stdout)["tuning"])


def test_tuning_is_deterministic_with_a_seed(tmp_path, xor):
    emb, labels = xor
    args = ["--labels", labels, "--folds", "3", "--head", "mlp", "-p", "epochs=8", "-p", "patience=3", "--seed", "7", "--json"]
    first, second = train_cli(emb, "-o", tmp_path / "a", *args), train_cli(emb, "-o", tmp_path / "b", *args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    for fold_a, fold_b in zip(a["tuning"], b["tuning"]):
        assert fold_a["params"] == fold_b["params"] and fold_a["candidates"] == fold_b["candidates"]
        assert fold_a["tried"] == 4  # --tune auto: mlp scores 4 candidates
    assert a["oof"] == b["oof"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "oof.csv"), pd.read_csv(tmp_path / "b" / "oof.csv"))


def test_tune_n_scores_that_many_candidates(tmp_path, xor):
    emb, labels = xor
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--folds", "3", "--head", "lgbm", "--tune", "2",
                       "-p", "num_leaves=7", "--json")
    assert result.exit_code == 0, result.output
    for fold in json.loads(result.stdout)["tuning"]:
        assert fold["tried"] == 2 and fold["spec"] == "2"
        assert all("num_leaves" not in c["params"] for c in fold["candidates"])


def test_head_auto_picks_the_head_that_clearly_wins(tmp_path, xor):
    emb, labels = xor
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--folds", "3", "--head", "auto",
                       "--metric", "accuracy", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    choice = summary["head_choice"]
    oof = {c["head"]: c["oof"]["accuracy"] for c in choice["candidates"]}
    assert set(oof) == {"logreg", "mlp", "lgbm"}  # small data: lgbm is in
    assert oof["logreg"] < 0.7 and max(oof.values()) > 0.85, oof
    assert choice["winner"] == max(oof, key=oof.get) != "logreg"
    assert summary["head"] == choice["winner"] and summary["oof"]["accuracy"] == pytest.approx(oof[choice["winner"]])
    assert f"--head auto: {choice['winner']} wins" in flat(result.stderr)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["head"]["name"] == choice["winner"] and manifest["head"]["choice"]["winner"] == choice["winner"]
    assert not (tmp_path / "run" / "models" / "auto").exists()
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), str(emb), "-o", str(tmp_path / "sub.csv"), "--json"])
    assert predicted.exit_code == 0, predicted.output
    oof_frame = pd.read_csv(tmp_path / "run" / "oof.csv")
    assert len(oof_frame) == 240


def test_head_auto_ties_go_to_the_faster_head():
    from pipelines.train.train import auto_winner

    tied = [{"head": "mlp", "oof": {"accuracy": 0.9, "logloss": 0.3}, "seconds": 5.0},
            {"head": "logreg", "oof": {"accuracy": 0.9, "logloss": 0.4}, "seconds": 1.0}]
    assert auto_winner(tied, "accuracy") == "logreg"
    assert auto_winner(tied, "logloss") == "mlp"  # lower is better
    tied[1]["oof"]["accuracy"] = float("nan")
    assert auto_winner(tied, "accuracy") == "mlp"


def test_report_shows_tuning_and_the_auto_choice(tmp_path, xor):
    emb, labels = xor
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", "--folds", "3", "--head", "auto", "--tune", "2")
    assert result.exit_code == 0, result.output
    assert "tuning" in result.output and "candidates on the same folds" in flat(result.output)
    shown = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert shown.exit_code == 0, shown.output
    assert "tuning (inner split of each fold's training part" in flat(shown.output)
    assert "winner" in shown.output and "logreg" in shown.output and "defaults" in shown.output
    as_json = json.loads(runner.invoke(app, ["report", str(tmp_path / "run"), "--json"]).stdout)
    assert len(as_json["tuning"]) == 3 and as_json["head_choice"]["winner"] in ("mlp", "lgbm")


@pytest.mark.parametrize("args, expected", [
    (["--tune", "sometimes"], "--tune 'sometimes' is not auto, off or a number"),
    (["--tune", "0"], "--tune '0' is not auto, off or a number"),
    (["--head", "auto", "-p", "C=0.1"], "with --head auto, drop --param"),
    (["-p", "scaling=minmax"], "--param scaling='minmax' is unknown"),
])
def test_bad_tuning_options_are_refused_in_one_line(tmp_path, noisy, args, expected):
    emb, labels, _ = noisy
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *args)
    assert result.exit_code == 1
    assert expected in flat(result.stderr) and "Traceback" not in result.output


def test_tune_spec_parses():
    assert TuneSpec.parse("auto") == TuneSpec("auto") and TuneSpec.parse("OFF") == TuneSpec("off")
    assert TuneSpec.parse(5) == TuneSpec("count", 5) and TuneSpec.parse("5").describe() == "5"
    with pytest.raises(ConfigError):
        TuneSpec.parse("-1")


def test_a_candidate_replaces_the_defaults_only_when_clearly_better():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    signed = tuning.scorer("binary", "logloss")
    default = np.column_stack([np.full(300, 0.5), np.full(300, 0.5)])
    sharp = np.where(y[:, None] == np.arange(2), 0.8, 0.2)  # right on every row
    assert tuning.beats_share(signed, y, sharp, default, seed=1) == 1.0
    assert tuning.beats_share(signed, y, default, default, seed=1) == 0.0  # as good is not better
    right = np.arange(300) < 162  # a little better on 54% of the rows, a little worse on the rest
    p_true = np.where(right, 0.55, 0.45)
    slightly = np.where(y[:, None] == np.arange(2), p_true[:, None], 1 - p_true[:, None])
    assert signed(y, slightly) > signed(y, default)  # better on these rows, by chance as likely as not
    assert 0.3 < tuning.beats_share(signed, y, slightly, default, seed=1) < tuning.SWITCH_CONFIDENCE


def test_a_winner_must_beat_the_defaults_again_on_a_second_inner_split(noisy, monkeypatch):
    """The search's best clears the bootstrap on its split; the second split (another seed) decides."""
    from pipelines.heads import get_head

    _, _, X = noisy
    y = (X[:, :10].sum(axis=1) > 0).astype(int)
    calls = []

    def scripted(second_split_winner):
        def search(head_cls, inner, candidates, task, n_classes, fixed, metric, seed):
            calls.append((seed, [dict(c) for c in candidates]))
            held = inner.y[inner.held_rows]
            right = np.where(held[:, None] == np.arange(2), 0.9, 0.1)
            flat_pred = np.full((len(held), 2), 0.5)
            if len(calls) == 1:  # the search: the second candidate is right on every held row
                return [(candidates[0], inner.score(held, flat_pred), flat_pred), (candidates[1], inner.score(held, right), right)]
            first, second = (flat_pred, right) if second_split_winner == "candidate" else (right, flat_pred)
            return [(candidates[0], inner.score(held, first), first), (candidates[1], inner.score(held, second), second)]
        return search

    for second_split_winner, switched in (("defaults", False), ("candidate", True)):
        calls.clear()
        monkeypatch.setattr(tuning, "run_search", scripted(second_split_winner))
        tuned = tuning.tune(get_head("logreg"), "binary", 2, {}, "logloss", 3, X, y, None, TuneSpec("count", 2))
        proposed = tuned.record["proposed"]
        assert proposed != {} and tuned.record["best_beats_defaults"] == 1.0
        assert [seed for seed, _ in calls] == [3, 4] and calls[1][1] == [{}, proposed]  # defaults vs the winner, seed + 1
        assert tuned.record["confirmation"]["confirmed"] is switched
        assert tuned.params == (proposed if switched else {})


def test_time_budget_bounds_the_search_and_is_recorded(tmp_path, xor):
    emb, labels = xor
    args = ["--labels", labels, "--folds", "3", "--head", "lgbm", "--json"]
    roomy = train_cli(emb, "-o", tmp_path / "roomy", *args, "--time-budget", "1h")
    tight = train_cli(emb, "-o", tmp_path / "tight", *args, "--time-budget", "0.01s")
    assert roomy.exit_code == 0 and tight.exit_code == 0, roomy.output + tight.output
    for fold in json.loads(roomy.stdout)["tuning"]:  # --tune auto with a budget: the head's whole list
        assert fold["tried"] == fold["of"] == 6 and fold["budget_s"] > 1000
    for fold in json.loads(tight.stdout)["tuning"]:  # no time past the defaults: they are kept
        assert fold["tried"] == 1 and fold["of"] == 6 and fold["params"] == {}
    manifest = json.loads((tmp_path / "tight" / "manifest.json").read_text())
    assert manifest["tuning"]["time_budget"] == "0.01s"
    shown = runner.invoke(app, ["report", str(tmp_path / "roomy")])
    assert shown.exit_code == 0 and "6 of 6" in shown.output, shown.output


@pytest.mark.parametrize("args, expected", [
    (["--time-budget", "soon"], "--time-budget 'soon' is not a duration"),
    (["--time-budget", "5m", "--tune", "off"], "--tune off has none; drop one of them"),
])
def test_bad_time_budgets_are_refused_in_one_line(tmp_path, noisy, args, expected):
    emb, labels, _ = noisy
    result = train_cli(emb, "--labels", labels, "-o", tmp_path / "run", *args)
    assert result.exit_code == 1
    assert expected in flat(result.stderr) and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_report_says_why_the_defaults_were_kept():
    from cli.views import check_text

    best = {"C": 0.01}
    assert check_text({"params": {}, "proposed": {}}) == ""  # the defaults were the best
    assert check_text({"params": {}, "proposed": best, "confirmation": None}) == "no clear win"
    assert check_text({"params": {}, "proposed": best, "confirmation": {"confirmed": False}}) == "lost on 2nd split"
    assert check_text({"params": best, "proposed": best, "confirmation": {"confirmed": True}}) == "confirmed"
