"""The `olymp run` config: one TOML file whose tables are the step configs of the chain.

    [data]     DataConfig: train/test inputs, labels, where everything goes
    [extract]  pipelines.extract.config.ExtractConfig, for the train and the test inputs alike
    [head]     pipelines.train.train.TrainConfig (`name` = its `head`, `params` = its `head_params`)
    [predict]  pipelines.predict.config.PredictConfig
    [smoke]    SmokeConfig: how `--smoke` shrinks the chain

The step tables are read generically from the step dataclasses' fields, so a field added to
ExtractConfig/TrainConfig/PredictConfig is a config key at once. Fields the chain fills itself
(input and output paths, `overwrite`) are not keys. Unknown keys are refused by name, values are
type-checked, and `--set table.key=value` overrides any key (the value parsed as a TOML scalar).
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.core.config import check_fields, field_types, in_range, unknown_key
from pipelines.core.errors import ConfigError
from pipelines.extract.config import RANGES as EXTRACT_RANGES
from pipelines.extract.config import ExtractConfig
from pipelines.predict.config import PredictConfig
from pipelines.train.train import TrainConfig


@dataclass
class DataConfig:
    train: str  # folder (or id,path listing) of the training inputs
    labels: str | None = None  # labels CSV (columns: [head] id_col/target_col); None with [head] labels_from_folders
    test: str | None = None  # folder or listing of the test inputs; None: the chain stops after train-head
    output: str = "olymp-out"  # everything the chain writes: emb/train, emb/test, run/, submission.csv


@dataclass
class SmokeConfig:
    limit: int = 48  # inputs per split (and labelled rows) in a smoke run
    folds: int = 2  # CV folds in a smoke run


AUTO = "auto"  # extract.backbone / head.name: chosen by measuring on the data (`olymp run`, pipelines/chain/chain.py)


# table -> (dataclass, {config key: dataclass field} renames, fields the chain sets itself)
STEP_TABLES = {
    "extract": (ExtractConfig, {}, {"inputs", "output", "overwrite"}),
    "head": (TrainConfig, {"name": "head", "params": "head_params"}, {"embeddings", "labels", "output", "overwrite"}),
    "predict": (PredictConfig, {}, {"run_dir", "inputs", "output"}),
}
PLAIN_TABLES = {"data": DataConfig, "smoke": SmokeConfig}


@dataclass
class RunConfig:
    data: DataConfig
    extract: dict = field(default_factory=dict)  # ExtractConfig fields (checked), minus inputs/output
    head: dict = field(default_factory=dict)  # TrainConfig fields (checked), keyed by their config names
    predict: dict = field(default_factory=dict)  # PredictConfig fields (checked)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    source: str = "-"  # where the config was read from (for messages)

    def extract_config(self, inputs: str, output: str, **changes) -> ExtractConfig:
        return ExtractConfig(inputs=inputs, output=output, **{**self.extract, **changes})

    def train_config(self, embeddings: list[str], output: str, **changes) -> TrainConfig:
        renames = STEP_TABLES["head"][1]
        values = {renames.get(key, key): value for key, value in self.head.items()}
        return TrainConfig(**{"embeddings": embeddings, "labels": self.data.labels, "output": output, **values, **changes})

    def predict_config(self, run_dir: str, inputs: list[str], output: str) -> PredictConfig:
        return PredictConfig(run_dir=run_dir, inputs=inputs, output=output, **self.predict)


def table_class(table: str):
    return PLAIN_TABLES[table] if table in PLAIN_TABLES else STEP_TABLES[table][0]


def table_keys(table: str) -> dict[str, tuple[str, object]]:
    """Config keys of a table -> (dataclass field name, type hint)."""
    renames, owned = ({}, set()) if table in PLAIN_TABLES else STEP_TABLES[table][1:]
    back = {name: key for key, name in renames.items()}
    return {back.get(name, name): (name, hint) for name, hint in field_types(table_class(table)).items() if name not in owned}


# --------------------------------------------------------------------------- values

def parse_scalar(text: str):
    """A --set value as TOML reads it (16, 0.1, true, "a b", [1, 2]); a bare word stays a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


# (table, key) -> (lowest, highest, whether the bounds themselves are allowed): the ranges the CLI
# options enforce (typer's min=/max=, TrainConfig's checks), so a TOML value can't slip past them.
# For a list, every element is checked. [extract]: ExtractConfig's own table (extract/config.py).
RANGES = {
    **{("extract", key): bounds for key, bounds in EXTRACT_RANGES.items()},
    ("smoke", "limit"): (1, None, True),
    ("smoke", "folds"): (2, None, True),
    ("head", "folds"): (2, None, True),
    ("head", "seed"): (0, None, True),
    ("head", "seeds"): (0, None, True),
    ("head", "pca"): (1, None, True),
    ("head", "limit"): (2, None, True),
    ("head", "threshold"): (0.0, 1.0, False),
    ("predict", "threshold"): (0.0, 1.0, True),
    ("predict", "batch_size"): (1, None, True),
}


def _out_of_range(value, bounds) -> bool:
    if bounds is None or isinstance(value, (bool, str)) or value is None:
        return False
    if isinstance(value, list):
        return any(_out_of_range(item, bounds) for item in value)
    return isinstance(value, (int, float)) and not in_range(value, bounds)


def _range_text(bounds) -> str:
    low, high, inclusive = bounds
    if high is None:
        return f"{'≥' if inclusive else '>'} {low}"
    return f"in [{low}, {high}]" if inclusive else f"in ({low}, {high})"


def _check_table(table: str, values: dict, source: str) -> dict:
    keys = {key: hint for key, (_, hint) in table_keys(table).items()}
    check_fields(table_class(table), values, source, prefix=f"{table}.", keys=keys)
    for key, value in values.items():
        bounds = RANGES.get((table, key))
        if _out_of_range(value, bounds):
            raise ConfigError(f"'{table}.{key}' in {source} is {value!r}, it must be {_range_text(bounds)}; fix the value")
    return values


# --------------------------------------------------------------------------- loading

def apply_override(raw: dict, assignment: str) -> None:
    """`table.key=value` (or `table.key.sub=value` into a dict field such as head.params) onto `raw`."""
    path, sep, text = assignment.partition("=")
    keys = [part.strip() for part in path.split(".")]
    if not sep or len(keys) < 2 or not all(keys):
        raise ConfigError(f"--set {assignment!r} is not TABLE.KEY=VALUE; e.g. --set head.name=logreg")
    table, key, *deeper = keys
    if table not in STEP_TABLES and table not in PLAIN_TABLES:
        tables = ", ".join([*PLAIN_TABLES, *STEP_TABLES])
        raise ConfigError(f"--set {path}: unknown table '{table}'; tables: {tables}")
    known = table_keys(table)
    if key not in known:
        raise unknown_key(key, known, f"--set {path}", prefix=f"{table}.")
    value = parse_scalar(text.strip())
    target = raw.setdefault(table, {})
    if deeper:
        if typing.get_origin(known[key][1]) is not dict and known[key][1] is not dict:
            raise ConfigError(f"--set {path}: '{table}.{key}' is not a table; use --set {table}.{key}=VALUE")
        target = target.setdefault(key, {})
        for part in deeper[:-1]:
            target = target.setdefault(part, {})
        target[deeper[-1]] = value
    else:
        target[key] = value


def build(raw: dict, source: str = "-") -> RunConfig:
    """A RunConfig from parsed TOML, every key checked."""
    for table, values in raw.items():
        if table not in STEP_TABLES and table not in PLAIN_TABLES:
            tables = ", ".join(f"[{t}]" for t in [*PLAIN_TABLES, *STEP_TABLES])
            raise ConfigError(f"unknown table '[{table}]' in {source}; a run config has {tables}")
        if not isinstance(values, dict):
            raise ConfigError(f"'{table}' in {source} must be a table ([{table}]), not a value")
    if "data" not in raw:
        raise ConfigError(f"{source} has no [data] table; give at least data.train and data.labels")
    tables = {table: _check_table(table, dict(raw.get(table, {})), source) for table in [*PLAIN_TABLES, *STEP_TABLES]}
    config = RunConfig(
        data=DataConfig(**tables["data"]), extract=tables["extract"], head=tables["head"],
        predict=tables["predict"], smoke=SmokeConfig(**tables["smoke"]), source=source,
    )
    _check_steps(config)
    return config


def _check_steps(config: RunConfig) -> None:
    """What the step configs check themselves (choices, combinations), run now rather than
    after the extraction: the step's own validate(), where it has one."""
    source = config.source
    if config.smoke.limit < config.smoke.folds:
        raise ConfigError(f"smoke.limit {config.smoke.limit} in {source} is fewer rows than smoke.folds "
                          f"{config.smoke.folds}; raise smoke.limit")
    from pipelines.train.train import _validate

    output = Path(config.data.output)
    steps = [_in_source(build_step, source) for build_step in (  # placeholders where the chain fills in paths
        lambda: config.extract_config(config.data.train, str(output / "emb" / "train")),  # ExtractConfig checks itself
        lambda: config.train_config([str(output / "emb" / "train")], str(output / "run"), **_auto_placeholders(config)),
        lambda: config.predict_config(str(output / "run"), [str(output / "emb" / "test")], str(output / "submission.csv")),
    )]
    for step in steps:
        check = getattr(step, "validate", None)
        if callable(check):
            _in_source(check, source)
    _in_source(lambda: _validate(steps[1]), source)


def _auto_placeholders(config: RunConfig) -> dict:
    """head.name = "auto" is checked as logreg until the chain resolves it (when train has no auto head)."""
    from pipelines.heads import HEADS

    return {"head": "logreg"} if config.head.get("name") == AUTO and AUTO not in HEADS else {}


def _in_source(check, source: str):
    """Run a step's check (or build a step config); its message (phrased for CLI options) gets the
    config it came from."""
    try:
        return check()
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load(path: str, overrides: list[str] | None = None, text: str | None = None) -> RunConfig:
    """Read a TOML run config (`text` when given, e.g. from stdin) and apply `--set` overrides.
    Relative data paths are taken from the directory the command runs in."""
    source = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"cannot read the run config {path} ({error.strerror}); pass a TOML file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source} is not valid TOML ({error}); fix that line") from None
    for assignment in overrides or []:
        apply_override(raw, assignment)
    return build(raw, source)
