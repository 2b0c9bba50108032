"""`olymp run` with a [finetune] table: a fine-tuning step on the train-head run's folds and its
own submission from the raw test files; the table typed, unknown keys and bad values refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.chain import runconfig
from pipelines.core.errors import ConfigError
from tests.test_chain import CONFIG, colour_data  # noqa: F401 - the fixture

runner = CliRunner()
FINETUNE_TABLE = """
[finetune]
backbone = "test_efficientnet"
weights = "random"
epochs = 1
resolution = 32
batch_size = 8
views = 1
hflip = true
device = "cpu"
"""


def write_config(folder: Path, data: Path, table: str = FINETUNE_TABLE) -> Path:
    text = CONFIG.format(root=data).replace(f'output = "{data}/out"', f'output = "{folder}/out"')
    path = folder / "run.toml"
    path.write_text(text.replace("folds = 3", "folds = 2") + table)
    return path


def invoke(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def statuses(result) -> dict[str, str]:
    return {step["name"]: step["status"] for step in json.loads(result.stdout)["steps"]}


def test_finetune_table_adds_a_step_on_the_head_runs_folds(tmp_path, colour_data):
    config = write_config(tmp_path, colour_data)
    first = invoke("run", config, "--json")
    assert statuses(first) == {"extract-train": "ran", "extract-test": "ran", "train-head": "ran", "predict": "ran",
                               "finetune": "ran", "predict-finetune": "ran"}
    out = tmp_path / "out"
    head = json.loads((out / "run" / "manifest.json").read_text())
    tuned = json.loads((out / "finetune" / "manifest.json").read_text())
    assert tuned["kind"] == "finetune_run" and tuned["fold_hash"] == head["fold_hash"]  # so they blend
    submission = pd.read_csv(out / "submission-finetune.csv", dtype=str)
    assert len(submission) == 9 and set(submission["label"]) <= {"c0", "c1", "c2"}
    invoke("blend", out / "run", out / "finetune", "-o", tmp_path / "blend")

    again = invoke("run", config, "--json")
    assert set(statuses(again).values()) == {"skipped"}

    # a [finetune] setting changed: only the fine-tuning and its submission are redone
    config.write_text(config.read_text().replace("epochs = 1", "epochs = 2"))
    changed = invoke("run", config, "--json")
    assert statuses(changed) == {"extract-train": "skipped", "extract-test": "skipped", "train-head": "skipped",
                                 "predict": "skipped", "finetune": "ran", "predict-finetune": "ran"}
    reasons = {step["name"]: step["reason"] for step in json.loads(changed.stdout)["steps"]}
    assert "finetune.epochs" in reasons["finetune"]


def test_no_finetune_table_no_finetune_step(tmp_path, colour_data):
    config = runconfig.load(str(write_config(tmp_path, colour_data, table="")))
    assert config.finetune is None
    dry = invoke("run", write_config(tmp_path, colour_data, table=""), "--dry-run", "--json")
    assert "finetune" not in statuses(dry)


@pytest.mark.parametrize(("table", "expected"), [
    ("[finetune]\nepochz = 3\n", "unknown key 'finetune.epochz'"),
    ("[finetune]\nfolds = 3\n", "unknown key 'finetune.folds'"),  # from [head], so both runs share folds
    ("[finetune]\nepochs = 'many'\n", "'finetune.epochs' in"),
    ("[finetune]\nepochs = 0\n", "--epochs 0"),
    ("[finetune]\nschedule = 'linear'\n", "--schedule 'linear'"),
])
def test_bad_finetune_tables_are_refused_by_name(tmp_path, colour_data, table, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        runconfig.load(str(write_config(tmp_path, colour_data, table=table)))
    result = invoke("run", write_config(tmp_path, colour_data, table=table), "--dry-run", code=1)
    assert expected in " ".join(result.output.split())


def test_finetune_keys_are_the_finetune_config_fields_the_chain_does_not_fill():
    import dataclasses

    from pipelines.finetune.config import FinetuneConfig

    owned = runconfig.STEP_TABLES["finetune"][2]
    assert set(runconfig.table_keys("finetune")) == {f.name for f in dataclasses.fields(FinetuneConfig)} - owned
    assert {"backbone", "train_layers", "epochs", "hflip", "lr"} <= set(runconfig.table_keys("finetune"))


@pytest.mark.parametrize("written", ["2", "'2'"])
def test_train_layers_may_be_a_toml_number_or_string(tmp_path, colour_data, written):
    config = runconfig.load(str(write_config(tmp_path, colour_data, table=f"[finetune]\ntrain_layers = {written}\n")))
    train = config.train_config(["emb"], "run")
    assert config.finetune_config(config.data.train, "ft", "run", train).train_layers == "2"
