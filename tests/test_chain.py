"""`olymp run`: one config chains extract → train-head → predict, skipping what is current;
`--set`, `--smoke`, `--limit`, and the scripting conventions (--json, --quiet, `-`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.chain import runconfig
from pipelines.chain.chain import run_chain
from pipelines.core.errors import ConfigError
from tests.test_end_to_end import write_colour_images

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

CONFIG = """
[data]
train = "{root}/train"
test = "{root}/test"
labels = "{root}/labels.csv"
output = "{root}/out"

[extract]
backbone = "test_resnet"
weights = "random"
device = "cpu"
workers = 0

[head]
name = "logreg"
folds = 3

[smoke]
limit = 12
folds = 2
"""


def invoke(*args, input=None, code=0):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    """train/ (30 images, 3 colour classes), test/ (9), labels.csv."""
    root = tmp_path_factory.mktemp("colours")
    (root / "train").mkdir()
    (root / "test").mkdir()
    labels = write_colour_images(root / "train", 30, seed=0)
    write_colour_images(root / "test", 9, seed=1)
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(root / "labels.csv", index=False)
    return root


def write_config(folder: Path, data: Path, **extra_head) -> Path:
    text = CONFIG.format(root=data).replace('output = "' + f"{data}/out", 'output = "' + f"{folder}/out")
    for key, value in extra_head.items():
        text = text.replace("[head]\n", f"[head]\n{key} = {json.dumps(value)}\n")
    path = folder / "run.toml"
    path.write_text(text)
    return path


def labels_of(data: Path) -> dict:
    return pd.read_csv(data / "labels.csv", dtype=str).set_index("id")["label"].to_dict()


def statuses(result) -> dict[str, str]:
    return {step["name"]: step["status"] for step in json.loads(result.stdout)["steps"]}


def test_round_trip_skips_what_is_current_and_reruns_only_downstream_of_a_change(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    first = invoke("run", config, "--json")
    assert statuses(first) == {"extract-train": "ran", "extract-test": "ran", "train-head": "ran", "predict": "ran"}
    summary = json.loads(first.stdout)
    submission = pd.read_csv(summary["submission"], dtype=str)
    assert len(submission) == 9 and set(submission["label"]) <= {"c0", "c1", "c2"}
    assert summary["scores"]["metric"] == "logloss" and len(summary["scores"]["folds"]) == 3

    again = invoke("run", config, "--json")
    assert set(statuses(again).values()) == {"skipped"}

    # One head setting changed in the file: the embeddings stay, the head and the submission are redone.
    config.write_text(config.read_text().replace("folds = 3", "folds = 4"))
    changed = invoke("run", config, "--json")
    assert statuses(changed) == {
        "extract-train": "skipped", "extract-test": "skipped", "train-head": "ran", "predict": "ran",
    }
    reasons = {step["name"]: step["reason"] for step in json.loads(changed.stdout)["steps"]}
    assert "head.folds" in reasons["train-head"]
    assert json.loads((tmp_path / "out" / "run" / "scores.json").read_text())["folds"][3]["fold"] == 3

    # A deleted output is rebuilt even though the settings did not change.
    shutil.rmtree(tmp_path / "out" / "emb" / "test")
    rebuilt = invoke("run", config, "--json")
    assert statuses(rebuilt) == {
        "extract-train": "skipped", "extract-test": "ran", "train-head": "skipped", "predict": "ran",
    }

    # A changed labels file re-trains.
    labels = pd.read_csv(colour_data / "labels.csv", dtype=str)
    labels.iloc[:-1].to_csv(tmp_path / "fewer.csv", index=False)
    dry = invoke("run", config, "--set", f"data.labels={tmp_path / 'fewer.csv'}", "--dry-run", "--json")
    assert statuses(dry) == {
        "extract-train": "would skip", "extract-test": "would skip", "train-head": "would run", "predict": "would run",
    }


def test_batch_size_and_device_do_not_re_extract(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    invoke("run", config, "--quiet")
    result = invoke("run", config, "--set", "extract.batch_size=3", "--set", "extract.workers=1", "--json")
    assert set(statuses(result).values()) == {"skipped"}


def test_smoke_runs_the_whole_chain_on_a_subsample_beside_the_real_output(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    result = invoke("run", config, "--smoke", "--json")
    summary = json.loads(result.stdout)
    smoke = tmp_path / "out-smoke"
    assert Path(summary["output"]) == smoke
    assert "--smoke measures plumbing only" in " ".join(result.stderr.split())  # a near-chance score is no verdict
    assert not (tmp_path / "out").exists()  # the real outputs are never touched
    manifest = json.loads((smoke / "run" / "manifest.json").read_text())
    assert manifest["folds"] == 2 and manifest["n_rows"] == 12 and manifest["limit"] == 12
    assert json.loads((smoke / "emb" / "train" / "_manifest.json").read_text())["counts"]["inputs"] == 12
    assert len(pd.read_csv(smoke / "submission.csv")) == 9  # the whole (9-image) test set: under the limit
    # The training subsample is stratified: every class is in it, 4 rows each.
    assert pd.read_csv(smoke / "run" / "folds.csv", dtype=str)["id"].map(labels_of(colour_data)).value_counts().tolist() == [4, 4, 4]
    assert set(statuses(invoke("run", config, "--smoke", "--json")).values()) == {"skipped"}


def test_dry_run_of_a_smoke_run_writes_nothing_and_agrees_with_the_real_run(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    assert set(statuses(invoke("run", config, "--smoke", "--dry-run", "--json")).values()) == {"would run"}
    assert not (tmp_path / "out-smoke").exists()  # not even the subsample listing
    invoke("run", config, "--smoke", "--quiet")
    assert set(statuses(invoke("run", config, "--smoke", "--dry-run", "--json")).values()) == {"would skip"}


# --------------------------------------------------------------------------- the config


def test_set_overrides_parse_toml_scalars(tmp_path, colour_data):
    config = runconfig.load(write_config(tmp_path, colour_data), [
        "head.name=lgbm", "extract.batch_size=16", "head.params.num_leaves=7", "head.params.learning_rate=0.05",
        'extract.backbone="resnet18"', "extract.window=2.5", "predict.proba=true", "data.test=elsewhere/test",
    ])
    assert config.head["name"] == "lgbm"
    assert config.head["params"] == {"num_leaves": 7, "learning_rate": 0.05}
    assert config.extract["batch_size"] == 16 and config.extract["backbone"] == "resnet18"
    assert config.extract["window"] == 2.5 and config.predict == {"proba": True}
    assert config.data.test == "elsewhere/test"
    train = config.train_config(["emb"], "run")
    assert (train.head, train.head_params["num_leaves"], train.folds) == ("lgbm", 7, 3)
    assert config.extract_config("in", "out").batch_size == 16


def test_every_step_dataclass_field_is_a_key():
    import dataclasses

    from pipelines.extract.config import ExtractConfig

    owned = {"inputs", "output", "overwrite"}
    assert set(runconfig.table_keys("extract")) == {f.name for f in dataclasses.fields(ExtractConfig)} - owned
    assert {"name", "params", "folds", "seed", "metric", "limit"} <= set(runconfig.table_keys("head"))


@pytest.mark.parametrize(
    ("edit", "overrides", "expected"),
    [
        (("[head]\n", "[head]\nnme = 'x'\n"), [], "unknown key 'head.nme'"),
        (("[extract]\n", "[extract]\nbatchsize = 4\n"), [], "unknown key 'extract.batchsize'"),
        (("[smoke]\n", "[smok]\n"), [], "unknown table '[smok]'"),
        (None, ["head.nme=mlp"], "unknown key 'head.nme'"),
        (None, ["heads.name=mlp"], "unknown table 'heads'"),
        (None, ["head.name"], "not TABLE.KEY=VALUE"),
        (None, ["extract.workers=many"], "'extract.workers' in"),
        (None, ["head.folds=2.5"], "expected int"),
        (None, ["head.name.x=1"], "'head.name' is not a table"),
        (None, ["data.labels=nowhere.csv"], "data.labels nowhere.csv does not exist"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused_by_name(tmp_path, colour_data, edit, overrides, expected):
    config = write_config(tmp_path, colour_data)
    if edit:
        config.write_text(config.read_text().replace(*edit))
    args = [f"--set={o}" for o in overrides]
    result = invoke("run", config, *args, code=1)
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        run_chain(runconfig.load(config, overrides), dry_run=True)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["head.folds=1"], "'head.folds' in"),  # "... is 1, it must be ≥ 2"
        (["extract.backbone=efficientnet_lite00"], "unknown backbone 'efficientnet_lite00': did you mean"),
        (["head.name=xgboost"], "unknown head 'xgboost'"),
        (["head.metric=auc"], "metric 'auc' does not fit a multiclass task"),
        (["head.target_col=species"], "has no column 'species'"),
        (["extract.precision=fp64"], "extract.precision = 'fp64' is not one of"),
        (["extract.pool=median"], "extract.pool = 'median' is not one of"),
        (["predict.threshold=2.0"], "'predict.threshold' in"),
        (["extract.weights=nowhere.pt"], "extract.weights nowhere.pt is not a file"),
        (["data.test=nowhere"], "data.test nowhere does not exist"),
    ],
)
def test_dry_run_refuses_bad_values_and_names_before_any_work(tmp_path, colour_data, monkeypatch, overrides, expected):
    """--dry-run checks every value and resolves the backbone/head/metric names; a real run
    refuses the same before extracting anything (issue: folds=1 and a mistyped backbone used to
    pass the dry run, then the real run extracted both splits before failing)."""
    import pipelines.extract.runner as runner_module

    def no_extraction(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(runner_module, "run_extraction", no_extraction)
    config = write_config(tmp_path, colour_data)
    args = [f"--set={o}" for o in overrides]
    for mode in (["--dry-run"], []):
        result = invoke("run", config, *args, *mode, code=1)
        assert expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "out").exists()  # nothing written


def test_dry_run_shows_what_the_names_resolved_to(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    result = invoke("run", config, "--dry-run")
    assert "ok extract-train: backbone test_resnet for image" in result.stdout
    assert "ok train-head: logreg, 3 folds, multiclass task on 30 labelled rows" in result.stdout
    assert not (tmp_path / "out").exists()
    checks = json.loads(invoke("run", config, "--dry-run", "--json").stdout)["checks"]
    assert checks[0].startswith("extract-train: backbone test_resnet")


def test_config_from_stdin_and_a_missing_data_table(tmp_path, colour_data):
    text = write_config(tmp_path, colour_data).read_text()
    result = invoke("run", "-", "--dry-run", "--json", input=text)
    assert set(statuses(result).values()) == {"would run"}
    assert "no [data] table" in invoke("run", "-", input="[head]\nname = 'lgbm'\n", code=1).stderr
    without_test = text.replace(f'test = "{colour_data}/test"\n', "")
    result = invoke("run", "-", "--dry-run", "--json", input=without_test)
    assert list(statuses(result)) == ["extract-train", "train-head"]  # no test set: the chain stops at the CV run


# --------------------------------------------------------------------------- --limit


def test_extract_limit_takes_the_first_inputs_by_id(tmp_path, colour_data):
    tiny = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu", "--limit", "5"]
    ids = []
    for name in ("a", "b"):
        invoke("extract", colour_data / "train", "-o", tmp_path / name, *tiny, "--quiet")
        ids.append(sorted(pd.read_parquet(tmp_path / name)["id"]))
    assert ids[0] == ids[1] == sorted(p.stem for p in (colour_data / "train").glob("*.png"))[:5]


def test_train_head_limit_is_a_seeded_stratified_subsample(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(90, n_classes=3)
    ids = [f"r{i:03d}" for i in range(90)]
    y = (y + (pd.Series(range(90)) % 7 == 0).to_numpy()) % 3  # uneven class sizes
    make_embeddings(tmp_path / "emb", ids, X)
    make_csv(tmp_path / "labels.csv", id=ids, label=[f"k{v}" for v in y])
    chosen = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "--folds", "2",
               "--limit", "30", "--seed", seed, "-o", tmp_path / name, "--quiet")
        chosen.append(pd.read_csv(tmp_path / name / "folds.csv", dtype=str)["id"].tolist())
    assert len(chosen[0]) == 30 and chosen[0] == chosen[1] and chosen[0] != chosen[2]
    full = pd.Series(y).value_counts(normalize=True).sort_index()
    picked = pd.Series([y[ids.index(i)] for i in chosen[0]]).value_counts(normalize=True).sort_index()
    assert (abs(full - picked) <= 1 / 30 + 1e-9).all()


# --------------------------------------------------------------------------- scripting


def test_quiet_prints_nothing_and_errors_still_reach_stderr(tmp_path, make_embeddings, make_csv, make_separable):
    X, y = make_separable(40)
    ids = [f"r{i}" for i in range(40)]
    make_embeddings(tmp_path / "emb", ids, X)
    make_csv(tmp_path / "labels.csv", id=ids, label=y)
    ok = invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg", "-o",
                tmp_path / "run", "--quiet")
    assert ok.stdout == "" and ok.stderr == ""
    failed = invoke("train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "-o", tmp_path / "run",
                    "--quiet", code=1)
    assert failed.stdout == "" and "already holds a run" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


def test_predict_reads_test_files_from_stdin_and_writes_the_csv_to_stdout(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    invoke("run", config, "--quiet")
    run_dir = tmp_path / "out" / "run"
    files = sorted((colour_data / "test").glob("*.png"))
    piped = invoke("predict", run_dir, "-", "-o", "-", "--quiet", input="\n".join(map(str, files)) + "\n")
    lines = piped.stdout.strip().splitlines()
    assert lines[0] == "id,label" and len(lines) == 1 + len(files)
    assert piped.stderr == ""
    expected = pd.read_csv(tmp_path / "out" / "submission.csv", dtype=str)
    assert lines[1:] == [f"{i},{label}" for i, label in zip(expected["id"], expected["label"])]
    # embedding dirs work through stdin too, and --json reports the written file
    result = invoke("predict", run_dir, "-", "-o", tmp_path / "sub.csv", "--json",
                    input=str(tmp_path / "out" / "emb" / "test") + "\n")
    assert json.loads(result.stdout)["rows"] == 9
    assert "stdin held no test inputs" in invoke("predict", run_dir, "-", "-o", "-", input="\n", code=1).stderr


def test_extract_json_summary(tmp_path, colour_data):
    result = invoke("extract", colour_data / "test", "-o", tmp_path / "emb", "--backbone", "test_resnet", "--weights",
                    "random", "--workers", "0", "--device", "cpu", "--json")
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 9 and summary["errors"] == 0


# --------------------------------------------------------------------------- the contest Makefile


@pytest.mark.slow
def test_contest_makefile_chains_features_cv_submit(tmp_path, colour_data):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    makefile = ROOT / "configs" / "examples" / "contest.mk"
    olymp = f"{sys.executable} -m cli.app"
    args = ["make", "-f", str(makefile), f"DATA={colour_data}", f"LABELS={colour_data / 'labels.csv'}",
            "BACKBONE=test_resnet", "HEAD=logreg", "FOLDS=2", "EXTRACT=--weights random --workers 0 --device cpu",
            f"OLYMP={olymp}"]
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    plan = subprocess.run([*args, "-n", "submit"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert [line.split()[3] for line in plan.stdout.splitlines() if " -m cli.app " in line] == [
        "extract", "train-head", "extract", "predict"]
    subprocess.run([*args, "submit"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    submission = tmp_path / "out" / "submission-logreg-test_resnet.csv"
    assert len(pd.read_csv(submission)) == 9
    # Nothing left to do; a new FOLDS re-trains and re-predicts, and leaves the embeddings alone.
    again = subprocess.run([*args, "-n", "submit"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert " -m cli.app " not in again.stdout
    refold = subprocess.run([*args[:-2], "FOLDS=3", args[-1], "-n", "submit"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    commands = [line.split()[3] for line in refold.stdout.splitlines() if " -m cli.app " in line]
    assert commands == ["train-head", "predict"]


def test_a_test_file_replaced_by_another_of_the_same_size_re_runs_what_depends_on_it(tmp_path, colour_data):
    import os

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(colour_data / "train", data / "train")
    shutil.copy(colour_data / "labels.csv", data / "labels.csv")
    (data / "test").mkdir()

    def write_bmp(name, channel):  # uncompressed: the size depends only on the picture's shape
        pixels = np.full((32, 32, 3), 30, dtype=np.uint8)
        pixels[..., channel] = 220
        Image.fromarray(pixels).save(data / "test" / f"{name}.bmp")

    for index in range(6):
        write_bmp(f"t{index}", index % 3)
    config = write_config(tmp_path, data)
    first = invoke("run", config, "--json")
    assert set(statuses(first).values()) == {"ran"}
    before = pd.read_csv(tmp_path / "out" / "submission.csv", dtype=str).set_index("id")["label"]

    target = data / "test" / "t0.bmp"
    stat = target.stat()
    write_bmp("t0", 2)  # red becomes blue: same name, same size, same mtime
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns

    dry = invoke("run", config, "--dry-run", "--json")
    assert statuses(dry) == {
        "extract-train": "would skip", "extract-test": "would run", "train-head": "would skip", "predict": "would run",
    }
    again = invoke("run", config, "--json")
    assert statuses(again) == {"extract-train": "skipped", "extract-test": "ran", "train-head": "skipped", "predict": "ran"}
    after = pd.read_csv(tmp_path / "out" / "submission.csv", dtype=str).set_index("id")["label"]
    assert after["t0"] == before["t2"] and (after.drop("t0") == before.drop("t0")).all()


# --------------------------------------------------------------------------- the examples beside make demo


def test_example_configs_write_beside_make_demos_run_and_reuse_its_embeddings(tmp_path, colour_data, monkeypatch):
    """`olymp run configs/examples/digits.toml` after `make demo` must not write into make demo's
    train-head run, and must find make demo's extraction where its own extract steps write."""
    makefile = (ROOT / "Makefile").read_text()
    for name in ("digits", "sounds"):
        config = runconfig.load(ROOT / "configs" / "examples" / f"{name}.toml")
        demo_root = Path(config.data.labels).parent  # demo_data, demo_data/sounds
        assert Path(config.data.output) != demo_root / "run"
    digits = runconfig.load(ROOT / "configs" / "examples" / "digits.toml")
    for split in ("train", "test"):
        assert f"olymp extract $(DEMO)/{split} -o $(DEMO)/{Path(digits.data.output).name}/emb/{split}" in makefile

    # ... and the chain resumes such an extraction (made by plain olymp extract) instead of redoing it
    config = write_config(tmp_path, colour_data)
    invoke("extract", colour_data / "train", "-o", tmp_path / "out" / "emb" / "train", "--backbone", "test_resnet",
           "--weights", "random", "--device", "cpu", "--workers", "0", "--quiet")
    import pipelines.extract.runner as runner_module

    real, processed = runner_module.run_extraction, []

    def counting(extract_config, on_progress=None):
        summary = real(extract_config, on_progress)
        processed.append((Path(extract_config.output).name, summary.processed, summary.resumed))
        return summary

    monkeypatch.setattr(runner_module, "run_extraction", counting)
    invoke("run", config, "--quiet")
    assert processed == [("train", 0, 30), ("test", 9, 0)]  # train resumed whole, test extracted


@pytest.mark.slow
def test_backbone_auto_is_chosen_by_the_trial_and_recorded(tmp_path, colour_data, hf_cache):
    """backbone = "auto": the trial (only the packaged Lite0 here: Lite0 and Lite0 --layers -2,-1)
    chooses, steps.json records what and why, the extraction uses it, and a second run reuses the
    recorded choice (and skips every step)."""
    text = CONFIG.format(root=colour_data).replace(f'output = "{colour_data}/out"', f'output = "{tmp_path}/out"')
    text = text.replace('backbone = "test_resnet"\nweights = "random"\n', 'backbone = "auto"\n').replace(
        f'test = "{colour_data}/test"\n', "")
    config = tmp_path / "run.toml"
    config.write_text(text)
    first = json.loads(invoke("run", config, "--json").stdout)
    state = json.loads((tmp_path / "out" / "steps.json").read_text())["steps"]
    chosen = state["auto"]["backbone"]
    assert chosen["chosen"] in ("efficientnet_lite0", "efficientnet_lite0 --layers -2,-1")
    assert "trial winner with logreg" in chosen["why"] and "also tried" in chosen["why"]
    assert len({row["route"] for row in state["auto"]["trial"]["rows"] if row["mean"] is not None}) == 2
    assert state["extract-train"]["settings"]["extract.backbone"] == "efficientnet_lite0"
    assert state["extract-train"]["settings"]["extract.layers"] == chosen["extract"].get("layers")
    assert any(line.startswith("auto: extract.backbone = ") for line in first["checks"])
    second = json.loads(invoke("run", config, "--json").stdout)
    assert {step["status"] for step in second["steps"]} == {"skipped"}


@pytest.mark.slow
def test_head_auto_is_the_trials_best_head_on_the_configured_backbone(tmp_path, colour_data):
    """head.name = "auto" with a fixed backbone: the trial varies only the head (on that backbone's
    extraction), train-head runs the winner, steps.json says which and why."""
    from pipelines.chain.chain import train_has_auto_head

    if train_has_auto_head():
        pytest.skip("train-head resolves --head auto itself")
    config = write_config(tmp_path, colour_data)
    config.write_text(config.read_text().replace('name = "logreg"', 'name = "auto"').replace(
        f'test = "{colour_data}/test"\n', ""))
    invoke("run", config, "--json")
    state = json.loads((tmp_path / "out" / "steps.json").read_text())["steps"]
    head = state["auto"]["head"]
    trial = state["auto"]["trial"]
    assert trial["routes"] == ["test_resnet"] and "backbone" not in state["auto"]
    scored = {row["head"]: row["mean"] for row in trial["rows"] if row["mean"] is not None}
    assert len(scored) >= 2 and scored[head["chosen"]] == max(scored.values())
    assert "best head on test_resnet" in head["why"]
    assert state["train-head"]["settings"]["head.name"] == head["chosen"]
    assert json.loads((tmp_path / "out" / "run" / "manifest.json").read_text())["head"]["name"] == head["chosen"]
