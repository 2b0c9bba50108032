"""`olymp run`: extract (train, test) → train-head → predict from one RunConfig, skipping what is done.

A step is skipped when its output is complete and its key is the one recorded when it last
finished. The key is a SHA-256 of the step's settings (the fields that shape its result: a new
batch size or device does not re-extract) and of its inputs: the content fingerprint of the
input files (ids and each file's `hashing.file_fingerprint`: size, mtime and a hash of its first
and last 64 KiB, so a file replaced by another of the same size counts as changed), the labels
file's bytes, and the keys of the steps it reads from, so a change anywhere re-runs exactly the
steps downstream of it.

    OUTPUT/
      steps.json       per step: key, settings, inputs, status, SHA-256 of its output manifest
      subsample-*.csv  (smoke / --limit runs) the stratified training inputs and their labels
      emb/train/       olymp extract
      emb/test/
      run/             olymp train-head (with its reports)
      submission.csv   olymp predict

A smoke run (`--smoke`, or `--limit N`) writes to OUTPUT-smoke (OUTPUT-limitN) instead, so it
never touches the real outputs.

`backbone = "auto"` ([extract]) and `name = "auto"` ([head]) are resolved before the steps by the
trial of `recommend --trial` (pipelines/select/trial.py) on the training inputs and labels: the
routes that run here (backbone auto) scored with the fast heads (head auto) on one sample and one
fold set; the winner's backbone (and its --layers) and head replace "auto". What was chosen, why,
and the trial's table are recorded in steps.json under "auto", with a key of the data, the labels
and the settings: a later run with the same key reuses the choice instead of measuring again. The
trial's extractions are kept in OUTPUT/trial/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipelines.data.embeddings import MANIFEST_NAME
from pipelines.core.errors import ConfigError
from pipelines.core.io import prepare_output_dir, write_json_atomic, write_text_atomic
from pipelines.core.hashing import file_sha256, json_digest
from pipelines.chain.runconfig import AUTO, STEP_TABLES, RunConfig
from pipelines.data.inputs import listing_fingerprint

STATE_FILE = "steps.json"
CHAIN_DIR_FIX = "set data.output to a folder, e.g. --set data.output=olymp-out"
SUBMISSION = "submission.csv"
# ExtractConfig fields that change how fast extraction runs, not what it computes.
EXTRACT_RUN_ONLY = frozenset({"device", "batch_size", "decode", "compile", "workers", "part_size", "max_error_rate"})

# on_progress(kind, message): kind is "step" (a step starts or is skipped), "info", "warning" or
# "round" (train-head's progress inside a fold: worth a spinner, not a line).
Progress = Callable[[str, str], None]


@dataclass
class StepResult:
    name: str  # extract-train | extract-test | train-head | predict
    status: str  # ran | skipped | would run | would skip (dry run)
    reason: str  # why it ran, e.g. "settings changed: head.head"
    output: str
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # the step's own result digest (when it ran)


@dataclass
class ChainResult:
    output: Path  # the chain's output root (OUTPUT, OUTPUT-smoke, ...)
    steps: list[StepResult]
    scores: dict | None  # the run's scores.json (metric, folds, mean, std, oof)
    run_dir: str | None
    submission: str | None
    seconds: float
    checks: list[str] = field(default_factory=list)  # what check_config resolved (backbone, head, metric)

    def summary(self) -> dict:
        return {
            "output": str(self.output), "run_dir": self.run_dir, "submission": self.submission,
            "seconds": round(self.seconds, 3), "scores": self.scores,
            "steps": [dataclasses.asdict(step) for step in self.steps],
            "checks": self.checks,
        }


# --------------------------------------------------------------------------- keys

@dataclass
class Step:
    name: str
    output: Path  # the file or directory it writes
    manifest: Path  # the file whose hash and state say the output is complete
    settings: dict
    inputs: dict
    run: Callable[[bool], dict]  # run(overwrite) -> summary
    depends: tuple[str, ...] = ()  # steps whose output it reads: when one of them runs, so does this one

    @property
    def key(self) -> str:
        return json_digest({"settings": self.settings, "inputs": self.inputs})


def _settings(config, table: str, extra_skip=frozenset()) -> dict:
    """The step's settings under their config names (head.name, extract.backbone, ...), less the
    fields the chain fills in itself (the table's owned fields) and `extra_skip`."""
    _, key_to_field, owned = STEP_TABLES[table]
    skip = owned | extra_skip
    renames = {field: key for key, field in key_to_field.items()}
    return {f"{table}.{renames.get(k, k)}": v for k, v in dataclasses.asdict(config).items() if k not in skip}


def _complete(step: Step) -> bool:
    if not step.manifest.is_file():
        return False
    try:
        if step.name.startswith("extract"):
            return json.loads(step.manifest.read_text()).get("status") == "complete"
        if step.name == "train-head":
            manifest = json.loads(step.manifest.read_text())
            return all((step.output / model).is_file() for model in manifest.get("models", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False  # a damaged output is rebuilt
    return True


def _changed(old: dict, new: dict, prefix: str) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{prefix}{k}" for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]


def _decide(step: Step, record: dict | None, force: bool, ran: set[str]) -> str | None:
    """None when the step can be skipped, else why it has to run."""
    if force:
        return "--force"
    if record is None:
        return "no earlier run"
    rebuilt = [name for name in step.depends if name in ran]
    if rebuilt:
        return f"{', '.join(rebuilt)} ran"
    if record.get("key") != step.key:
        changed = _changed(record.get("settings", {}), step.settings, "") + \
            _changed(record.get("inputs", {}), step.inputs, "inputs.")
        return "changed: " + (", ".join(changed) if changed else "key")
    if record.get("status") != "complete":
        return "unfinished earlier run"
    if not _complete(step):
        return "output missing or incomplete"
    if record.get("manifest_sha256") != file_sha256(step.manifest):
        return "output was rewritten outside olymp run"
    return None


# --------------------------------------------------------------------------- checks before any work

def check_backbone(name: str | None, modality: str) -> str:
    """The backbone name resolved without building the model or reading weights: an unknown or
    mistyped name fails here with the suggestions of `olymp extract`. Returns how it resolved."""
    from pipelines.backbones.audio import describe_default_audio, resolve_audio_name
    from pipelines.backbones.catalog import catalog_defaults
    from pipelines.backbones.names import resolve_name

    if name == AUTO:
        return "auto (chosen by a trial before the steps run)"
    if modality == "audio":
        return describe_default_audio() if name is None else resolve_audio_name(name)
    resolved = resolve_name(name or catalog_defaults().image)
    return resolved.timm_name if resolved.timm_name == resolved.requested else f"{resolved.requested} (timm {resolved.timm_name})"


def _check_extract(extract, split: str) -> str:
    from pipelines.extract.config import POOLINGS
    from pipelines.data.inputs import infer_modality
    from pipelines.core.device import PRECISIONS, check_device_name
    from pipelines.extract.mappers.image import TTA_MODES, parse_batch_size

    if not Path(extract.inputs).exists():
        raise ConfigError(f"data.{split} {extract.inputs} does not exist; point data.{split} at a folder or an id,path listing")
    for key, value, allowed in (("decode", extract.decode, ("cpu", "gpu")), ("precision", extract.precision, PRECISIONS),
                                ("tta", extract.tta, TTA_MODES), ("pool", extract.pool, POOLINGS)):
        if value not in allowed:
            raise ConfigError(f"extract.{key} = {value!r} is not one of {', '.join(allowed)}; fix [extract] {key}")
    check_device_name(extract.device, "extract.device", "fix [extract] device")
    parse_batch_size(extract.batch_size)
    if extract.weights not in (None, "random") and not Path(extract.weights).is_file():
        raise ConfigError(f"extract.weights {extract.weights} is not a file; give a .safetensors/.pt path, 'random', or leave it out")
    modality = infer_modality(extract.inputs, extract.modality)
    return f"backbone {check_backbone(extract.backbone, modality)} for {modality}"


def check_config(config: RunConfig, smoke: bool = False, limit: int | None = None) -> list[str]:
    """Every value of the run config checked, and the backbone, head and metric names resolved,
    without extracting or fitting anything (reads the labels CSV and lists the input folders).
    `olymp run` calls it before any step, so a bad value costs nothing; --dry-run shows the
    returned lines (what each name resolved to)."""
    from pipelines.heads import get_head
    from pipelines.train.metrics import metrics_for
    from pipelines.data.labels import read_labels, target_from_labels
    from pipelines.train.train import _validate

    if config.data.labels is None and not config.head.get("labels_from_folders"):
        raise ConfigError("no data.labels; point data.labels at the labels CSV, or set [head] labels_from_folders = true")
    if config.data.labels is not None and not Path(config.data.labels).is_file():
        raise ConfigError(f"data.labels {config.data.labels} does not exist; point data.labels at the labels CSV")
    checks = []
    splits = [("train", config.data.train)] + ([("test", config.data.test)] if config.data.test else [])
    for split, inputs in splits:
        checks.append(f"extract-{split}: " + _check_extract(config.extract_config(inputs, ""), split))
    changes = {} if limit is None and not smoke else {"limit": limit if limit is not None else config.smoke.limit}
    if smoke:
        changes["folds"] = config.smoke.folds
    auto_head = config.head.get("name") == AUTO and not train_has_auto_head()
    train = config.train_config(["-"], "", **changes, **({"head": "logreg"} if auto_head else {}))
    _validate(train)
    if train.labels_from_folders:  # the classes are the parent folders' names
        from pipelines.data.inputs import extensions_for, infer_modality, list_inputs
        from pipelines.data.ids import folder_labels
        from pipelines.data.tasks import infer_task

        extract = config.extract_config(config.data.train, "")
        items = list_inputs(extract.inputs, extensions_for(infer_modality(extract.inputs, extract.modality)))
        values = folder_labels([item.id for item in items], config.data.train)
        target, n_rows = infer_task(values, train.task, "class folder"), len(values)
    else:
        labels = read_labels(Path(config.data.labels), train.id_col, train.target_col, train.group_col)
        target = target_from_labels(labels, slice(None), train.target_col, train.label_sep, train.task)
        n_rows = len(labels)
    names = metrics_for(target.task, train.metric)
    head = get_head(train.head)
    head.resolve_params(target.task, target.n_classes, train.head_params, names[0], train.seed)
    head_text = "auto (chosen by a trial before the steps run)" if auto_head else train.head
    checks.append(f"train-head: {head_text}, {train.folds} folds, {target.task} task on {n_rows} labelled rows, "
                  f"metric {names[0]}")
    if config.data.test:
        predict = config.predict_config("", [], "")
        if predict.sample_submission and not Path(predict.sample_submission).is_file():
            raise ConfigError(f"predict.sample_submission {predict.sample_submission} does not exist; fix the path or drop it")
        checks.append("predict: " + (f"rows and columns of {predict.sample_submission}" if predict.sample_submission
                                     else "one row per test input"))
    return checks


# --------------------------------------------------------------------------- the chain

def train_has_auto_head() -> bool:
    """Whether train-head itself takes --head auto (then head.name = "auto" is left to it)."""
    from pipelines.heads import HEADS

    return AUTO in HEADS


AUTO_STATE = "auto"  # steps.json entry of the resolved choices


def resolve_auto(config: RunConfig, root: Path, dry_run: bool = False, notify: Progress | None = None,
                 size: int | None = None) -> tuple[RunConfig, list[str]]:
    """The config with backbone/head "auto" replaced by the trial's winner, and one line per choice.
    The choice is recorded in steps.json (reused while the data, labels and settings are the same)."""
    notify = notify or (lambda kind, message: None)
    auto_backbone = config.extract.get("backbone") == AUTO
    auto_head = config.head.get("name") == AUTO and not train_has_auto_head()
    if not (auto_backbone or auto_head):
        return config, []
    extract = config.extract_config(config.data.train, "")
    from pipelines.data.inputs import infer_modality

    modality = infer_modality(extract.inputs, extract.modality)
    labels = config.data.labels
    settings = {"extract": {k: v for k, v in config.extract.items() if k not in EXTRACT_RUN_ONLY},
                "head": {k: v for k, v in config.head.items() if k not in ("params",)}}
    key = json_digest({"settings": settings, "size": size, "files": listing_fingerprint(config.data.train, extract.modality),
                       "labels_sha256": file_sha256(labels) if labels else None})
    state = _read_state(root)
    record = state.get(AUTO_STATE)
    if not (isinstance(record, dict) and record.get("key") == key and record.get("status") == "complete"):
        if dry_run:
            return _apply_choice(config, auto_backbone, auto_head, None, None), [
                "a trial chooses " + " and ".join(n for n, on in (("the backbone", auto_backbone), ("the head", auto_head)) if on)
                + " when the chain runs (not in --dry-run)"]
        record = _run_auto_trial(config, modality, auto_backbone, auto_head, root, key, notify, size)
        state[AUTO_STATE] = record
        _write_state(root, state)
    else:
        notify("step", "auto: the recorded trial choice still holds (same data, labels and settings), reused")
    backbone, head = record.get("backbone"), record.get("head")
    lines = [f"{part['field']} = {part['chosen']} ({part['why']})" for part in (backbone, head) if part]
    return _apply_choice(config, auto_backbone, auto_head, backbone, head), lines


def _apply_choice(config: RunConfig, auto_backbone: bool, auto_head: bool, backbone: dict | None,
                  head: dict | None) -> RunConfig:
    extract, head_table = dict(config.extract), dict(config.head)
    if auto_backbone:
        extract.pop("backbone", None)
        if backbone is not None:
            extract.update(backbone["extract"])
    if auto_head:
        head_table["name"] = head["chosen"] if head is not None else "logreg"
    return dataclasses.replace(config, extract=extract, head=head_table)


def _run_auto_trial(config: RunConfig, modality: str, auto_backbone: bool, auto_head: bool, root: Path, key: str,
                    notify: Progress, size: int | None = None) -> dict:
    """Run the trial for the "auto" fields; the record written to steps.json."""
    from pipelines.select.recommend import RecommendConfig, constraints_from, rank_candidates, resolve_device
    from pipelines.backbones.catalog import load_catalog
    from pipelines.select.trial import run_trial

    extract = config.extract_config(config.data.train, "")
    train = config.train_config([], "")
    device = resolve_device(extract.device if extract.device in ("auto", "cpu", "cuda") else "cuda")
    recommend_config = RecommendConfig(data_path=config.data.train, modality=modality, device=device)
    from pipelines.select.probe import probe_data

    c = constraints_from(recommend_config, probe_data(config.data.train, modality))
    entries = load_catalog()
    candidates, _ = rank_candidates(entries, c)
    routes = None
    if not auto_backbone:  # head only: the configured extraction is the one route
        routes = [_fixed_route(extract, modality)]
    heads = None if auto_head else [train.head]
    notify("step", "auto: running the trial (" + ", ".join(
        n for n, on in (("backbone", auto_backbone), ("head", auto_head)) if on) + f") -> {root / 'trial'}")
    trial = run_trial(
        candidates, c, data_path=config.data.train, labels=config.data.labels, id_col=train.id_col,
        target_col=train.target_col, group_col=train.group_col, heads=heads, cache=str(root / "trial"),
        entries=entries, routes=routes, size=size, report=lambda message: notify("info", message),
    )
    if trial.winner is None:
        raise ConfigError("backbone/head = \"auto\": the trial scored nothing (see its skipped rows); "
                          "set extract.backbone and head.name yourself")
    won, route = trial.winner, trial.winner_route
    score = f"{trial.metric} {won.mean:.4f} ± {won.std:.4f} over {trial.folds} folds on {trial.sample} rows"
    record = {"key": key, "status": "complete", "trial": trial.as_dict(),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    others = sorted({r.route for r in trial.rows if r.mean is not None} - {won.route})
    if auto_backbone:
        fields = {"backbone": route.backbone, "modality": route.modality}
        if route.layers:
            fields["layers"] = route.layers
        record["backbone"] = {"field": "extract.backbone", "chosen": route.label, "extract": fields,
                              "why": f"trial winner with {won.head}: {score}; also tried: {', '.join(others) or 'nothing else'}"}
    if auto_head:
        heads_tried = sorted({r.head for r in trial.rows if r.mean is not None and r.route == won.route} - {won.head})
        record["head"] = {"field": "head.name", "chosen": won.head,
                          "why": f"best head on {won.route}: {score}; also tried: {', '.join(heads_tried) or 'nothing else'}"}
    return record


def _fixed_route(extract, modality: str):
    """The configured extraction as a trial route (head = "auto" with a fixed backbone)."""
    from types import SimpleNamespace

    from pipelines.backbones.catalog import find_entry
    from pipelines.select.trial import Route

    name = extract.backbone  # None: extract's default for the modality
    try:
        entry = find_entry(name) if name else SimpleNamespace(name="default", timm_name="")
    except ConfigError:
        entry = None
    entry = entry or SimpleNamespace(name=name, timm_name=name)  # a timm name outside the catalog
    label = (name or "default backbone") + (f" --layers {extract.layers}" if extract.layers else "")
    return Route(label, entry, name, modality, extract.layers, extract.weights)


def output_root(config: RunConfig, smoke: bool, limit: int | None) -> Path:
    root = Path(config.data.output)
    if smoke:
        return root.with_name(root.name + "-smoke")
    if limit is not None:
        return root.with_name(f"{root.name}-limit{limit}")
    return root


def plan_steps(config: RunConfig, root: Path, smoke: bool = False, limit: int | None = None,
               notify: Progress | None = None, extract_progress=None, scratch: Path | None = None) -> list[Step]:
    """The steps of the chain with their keys (nothing runs until a step's `run`). A smoke or
    --limit plan writes its subsample listing into `root`, or into `scratch` (a dry run)."""
    from pipelines.predict.predict import predict
    from pipelines.train.train import train
    from pipelines.train.rundir import RUN_MANIFEST, run_dir_state

    notify = notify or (lambda kind, message: None)
    from_folders = bool(config.head.get("labels_from_folders"))
    if config.data.labels is None and not from_folders:
        raise ConfigError("no data.labels; point data.labels at the labels CSV, or set [head] labels_from_folders = true")
    if config.data.labels is not None and not Path(config.data.labels).is_file():
        raise ConfigError(f"data.labels {config.data.labels} does not exist; point data.labels at the labels CSV")
    if smoke and limit is None:
        limit = config.smoke.limit
    extract_changes = {} if limit is None else {"limit": limit}
    train_changes = {} if limit is None else {"limit": limit}
    if smoke:
        train_changes["folds"] = config.smoke.folds

    steps: list[Step] = []
    train_inputs, labels_path = config.data.train, None
    if limit is not None:  # train on a stratified subsample, not on whichever classes sort first
        train_inputs, labels_path = stratified_listing(config, limit, scratch or root)
    splits = [("train", train_inputs)] + ([("test", config.data.test)] if config.data.test else [])
    for split, inputs in splits:
        changes = extract_changes if split == "test" else {}
        extract_config = config.extract_config(inputs, str(root / "emb" / split), **changes)

        def run_extract(overwrite, extract_config=extract_config) -> dict:
            from pipelines.extract.runner import run_extraction

            summary = run_extraction(dataclasses.replace(extract_config, overwrite=overwrite), extract_progress)
            return dataclasses.asdict(summary)

        steps.append(Step(
            name=f"extract-{split}", output=Path(extract_config.output),
            manifest=Path(extract_config.output) / MANIFEST_NAME,
            settings=_settings(extract_config, "extract", EXTRACT_RUN_ONLY),
            inputs={"files": listing_fingerprint(inputs, extract_config.modality)},
            run=run_extract,
        ))

    extract_train = steps[0]
    if labels_path is not None:
        train_changes["labels"] = labels_path
    train_config = config.train_config([str(extract_train.output)], str(root / "run"), **train_changes)
    labels = None if train_config.labels is None else Path(train_config.labels)

    def run_train(overwrite) -> dict:
        # A finished run is replaced; an interrupted one (same key) resumes its finished folds.
        replace = overwrite or run_dir_state(Path(train_config.output)) == "complete"
        result = train(dataclasses.replace(train_config, overwrite=replace),
                       on_progress=lambda kind, message: notify(kind if kind in ("warning", "round") else "info", message))
        return result.summary()

    train_step = Step(
        name="train-head", output=Path(train_config.output), manifest=Path(train_config.output) / RUN_MANIFEST,
        settings=_settings(train_config, "head"),
        inputs={"labels_sha256": None if labels is None else file_sha256(labels), "embeddings": extract_train.key},
        run=run_train, depends=(extract_train.name,),
    )
    steps.append(train_step)

    if config.data.test:
        extract_test = steps[1]
        predict_config = config.predict_config(str(train_step.output), [str(extract_test.output)], str(root / SUBMISSION))
        sample = predict_config.sample_submission

        def run_predict(overwrite) -> dict:
            result = predict(predict_config, on_progress=notify)
            return {"output": str(result.output), "rows": result.n_rows, "prior_rows": result.n_prior,
                    "models": result.n_models, "warnings": result.warnings}

        steps.append(Step(
            name="predict", output=Path(predict_config.output), manifest=Path(predict_config.output),
            settings=_settings(predict_config, "predict"),
            inputs={"run": train_step.key, "embeddings": extract_test.key,
                    "sample_sha256": file_sha256(sample) if sample and Path(sample).is_file() else None},
            run=run_predict, depends=(train_step.name, extract_test.name),
        ))
    return steps


def stratified_listing(config: RunConfig, limit: int, root: Path) -> tuple[str, str]:
    """An id,path listing of `limit` labelled training inputs, stratified by label and fixed by
    the head's seed (the same rows every time), and the labels of just those rows. Both are
    rewritten only when their content changes. Returns (listing, labels) paths."""
    import numpy as np
    import pandas as pd

    from pipelines.data.inputs import extensions_for, infer_modality, list_inputs
    from pipelines.data.labels import read_labels
    from pipelines.data.sampling import subsample_rows

    train = config.train_config([], "")
    extract = config.extract_config(config.data.train, "")
    modality = infer_modality(extract.inputs, extract.modality)
    items = list_inputs(extract.inputs, extensions_for(modality))
    if train.labels_from_folders:  # the class is the parent folder: no labels file to cut
        from pipelines.data.ids import folder_labels

        label_of = dict(zip([item.id for item in items], folder_labels([item.id for item in items], config.data.train)))
    else:  # label ids in any spelling pipelines.data.ids knows (stem, file name, relative path)
        from pipelines.data.ids import match_ids

        labels = read_labels(train.labels, train.id_col, train.target_col)
        match = match_ids(labels[train.id_col].tolist(), [item.id for item in items],
                          lambda: {item.id: Path(item.path).suffix for item in items}, Path(train.labels).name,
                          config.data.train)
        label_of = {items[p].id: label for p, label in zip(match.positions, labels[train.target_col].tolist()) if p >= 0}
        label_id = {items[p].id: i for p, i in zip(match.positions, labels[train.id_col].tolist()) if p >= 0}
    labelled = [item for item in items if item.id in label_of]
    if not labelled:
        raise ConfigError(
            f"no input of {config.data.train} has a label in {train.labels} (input ids look like "
            f"'{items[0].id}'); check [head] id_col and the file names"
        )
    _, codes = np.unique(np.asarray([label_of[item.id] for item in labelled], dtype=object).astype(str), return_inverse=True)
    chosen = subsample_rows(codes, limit, train.seed, stratify=True)
    ids = [labelled[i].id for i in chosen]
    listing = pd.DataFrame({"id": ids, "path": [labelled[i].path for i in chosen]}).to_csv(index=False)
    prepare_output_dir(root, CHAIN_DIR_FIX)
    paths = root / "subsample-train.csv", root / "subsample-labels.csv"
    if train.labels_from_folders:
        subset = None
    else:
        subset = pd.read_csv(train.labels, dtype=str, keep_default_na=False)
        subset = subset[subset[train.id_col].isin({label_id[i] for i in ids})].to_csv(index=False)
    for path, body in zip(paths, (listing, subset)):
        if body is None:
            continue
        if not path.is_file() or path.read_text() != body:
            write_text_atomic(path, body)
    return str(paths[0]), None if subset is None else str(paths[1])


def _read_state(root: Path) -> dict:
    path = root / STATE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("steps", {})
    except (json.JSONDecodeError, AttributeError):
        return {}  # a damaged state file only costs re-running the steps


def _write_state(root: Path, state: dict) -> None:
    prepare_output_dir(root, CHAIN_DIR_FIX)
    write_json_atomic(root / STATE_FILE, {"olymp_format": 1, "kind": "chain", "steps": json.loads(json.dumps(state, default=str))})


def run_chain(config: RunConfig, smoke: bool = False, limit: int | None = None, force: bool = False,
              dry_run: bool = False, on_progress: Progress | None = None, extract_progress=None) -> ChainResult:
    """Run (or with `dry_run`, only decide) every step whose output is not current."""
    notify = on_progress or (lambda kind, message: None)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} leaves nothing to run; pass --limit 1 or more")
    started = time.perf_counter()
    checks = check_config(config, smoke, limit)  # every value, before anything is written or extracted
    root = output_root(config, smoke, limit)
    config, chosen = resolve_auto(config, root, dry_run, notify,
                                  limit if limit is not None else (config.smoke.limit if smoke else None))
    if chosen:
        checks += [f"auto: {line}" for line in chosen]
    with tempfile.TemporaryDirectory(prefix="olymp-dry-run-") if dry_run else contextlib.nullcontext() as scratch:
        # a dry run writes nothing, not even a smoke run's subsample listing (keys don't depend on its path)
        steps = plan_steps(config, root, smoke, limit, notify, extract_progress, Path(scratch) if scratch else None)
    state = _read_state(root)
    results, ran = [], set()
    for step in steps:
        reason = _decide(step, state.get(step.name), force, ran)
        if reason is not None:
            ran.add(step.name)
        if dry_run:
            results.append(StepResult(step.name, "would skip" if reason is None else "would run",
                                      reason or "up to date", str(step.output)))
            continue
        if reason is None:
            notify("step", f"{step.name}: up to date, skipped ({step.output})")
            results.append(StepResult(step.name, "skipped", "up to date", str(step.output)))
            continue
        notify("step", f"{step.name}: running ({reason}) -> {step.output}")
        previous = state.get(step.name)
        # A different key means the old output answers another question: replace it. The same
        # key (an interrupted run) resumes it.
        overwrite = previous is not None and previous.get("key") != step.key
        state[step.name] = {"key": step.key, "settings": step.settings, "inputs": step.inputs, "status": "running"}
        _write_state(root, state)
        began = time.perf_counter()
        summary = step.run(overwrite)
        state[step.name].update(
            status="complete", manifest_sha256=file_sha256(step.manifest),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        _write_state(root, state)
        results.append(StepResult(step.name, "ran", reason, str(step.output), time.perf_counter() - began, summary))

    run_dir = root / "run"
    scores_path = run_dir / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.is_file() and not dry_run else None
    submission = root / SUBMISSION
    return ChainResult(
        output=root, steps=results, scores=scores, run_dir=str(run_dir) if scores else None,
        submission=str(submission) if config.data.test and submission.is_file() and not dry_run else None,
        seconds=time.perf_counter() - started, checks=checks,
    )
