"""`olymp finetune`: raw labelled files -> one fine-tuned backbone per CV fold, out-of-fold
predictions, a run directory of the same shape as a train-head run.

Steps: list the files and read the labels (pipelines.finetune.data) -> folds (train's own
machinery, pipelines.data.cv: the same labels, seed and groups give train-head's folds, so the
runs blend) -> load the backbone once (offline weights, pipelines.backbones.registry) -> in
cached mode, the frozen lower part computed once per input and view (pipelines.finetune.cache)
-> per fold: a new head on a copy of the backbone, trained on the fold's training part minus an
inner split that early stopping watches; the fold's own rows are only predicted
(pipelines.finetune.loop) -> write the run:

    RUN_DIR/
      manifest.json   kind "finetune_run", task, classes, labels, inputs (+ fingerprint), folds,
                      "networks": ["fold-0", ...], "finetune": the resolved settings
      folds.csv, oof.csv, scores.json, per_class.csv, confusion.png, fold_scores.png   as a head run's
      errors.csv      labelled files that could not be read (id, path, error), left out
      fold-K/         network.safetensors + network.json (pipelines.backbones.finetuned);
                      done.json while the run is unfinished (the fold is whole: reused on resume);
                      checkpoint.safetensors + checkpoint.json while fold K trains (resume point)
      feature_cache/  cached mode: the frozen part's outputs (reused by later runs)
      .olymp-finetune-in-progress.json   until manifest.json is written
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import ConfigError, InputError
from pipelines.core.hardware import keep_freed_memory
from pipelines.core.io import is_temp_name, json_ready, write_atomic, write_json_atomic
from pipelines.core.hashing import file_sha256, json_digest
from pipelines.finetune.config import FinetuneConfig
from pipelines.finetune.data import LabelledFiles, load_labelled_files
from pipelines.finetune.loop import Notify, StopRowsHook
from pipelines.data import cv, metrics
from pipelines.train.rundir import REPORT_FILES, RUN_MANIFEST
from pipelines.data.tasks import prior

RUN_KIND = "finetune_run"
MARKER = ".olymp-finetune-in-progress.json"
CACHE_DIR = "feature_cache"
ERRORS_FILE = "errors.csv"
DONE_FILE = "done.json"
RUN_FILES = (RUN_MANIFEST, "folds.csv", "oof.csv", "scores.json", ERRORS_FILE)


def fold_dir_name(k: int) -> str:
    return f"fold-{k}"


@dataclass
class FinetuneResult:
    run_dir: Path
    task: str
    task_reason: str
    classes: list[str]
    metric: str
    metrics: list[str]
    head: str  # what the scores table calls the model: "finetune <backbone>"
    fold_scores: list[dict]
    mean: dict[str, float]
    std: dict[str, float]
    oof: dict[str, float]
    n_rows: int
    n_errors: int
    mode: str  # "cached" or "end-to-end"
    device: str
    warnings: list[str]
    seconds: float
    seed_scores: list[dict] = field(default_factory=list)  # (scores_table reads it; always empty here)
    threshold: float | None = None

    def summary(self) -> dict:
        return json_ready({
            "run_dir": str(self.run_dir), "task": self.task, "task_reason": self.task_reason, "classes": self.classes,
            "metric": self.metric, "model": self.head, "mode": self.mode, "device": self.device, "n_rows": self.n_rows,
            "n_errors": self.n_errors, "folds": self.fold_scores, "mean": self.mean, "std": self.std, "oof": self.oof,
            "warnings": self.warnings, "seconds": round(self.seconds, 3),
        })


# --------------------------------------------------------------------------- the run directory

def _manifest_kind(path: Path):
    try:
        return json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def prepare_run_dir(run_dir: Path, overwrite: bool, notify: Notify) -> None:
    """Create, resume (interrupted) or replace (--overwrite, a finished finetune run) the run dir;
    anything else is refused untouched."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file; pass -o with a directory for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        kind = _manifest_kind(run_dir / RUN_MANIFEST)
        if kind == RUN_KIND:
            if not overwrite:
                raise InputError(f"{run_dir} already holds a finetune run; pass --overwrite or choose another -o")
            _clear(run_dir)
        elif (run_dir / MARKER).is_file():
            if overwrite:
                _clear(run_dir)
            else:
                notify("warning", f"{run_dir} holds an interrupted finetune run: resuming it (finished folds of the "
                                  "same data and settings are reused, an unfinished one resumes at its last epoch; "
                                  "--overwrite starts afresh)", {})
        else:
            raise InputError(f"{run_dir} is not an olymp finetune run (no finetune manifest.json); "
                             "--overwrite only replaces finetune runs: choose a new folder, e.g. -o runs/NAME")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / MARKER).is_file():
        write_json_atomic(run_dir / MARKER, {"kind": "finetune_run_in_progress",
                                             "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def _clear(run_dir: Path) -> None:
    """Remove what finetune wrote except the feature cache (keyed, reusable); the manifest last."""
    for entry in run_dir.iterdir():
        if entry.is_dir() and entry.name.startswith("fold-"):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name in (*RUN_FILES[1:], *REPORT_FILES) or is_temp_name(entry.name):
            entry.unlink(missing_ok=True)
    (run_dir / RUN_MANIFEST).unlink(missing_ok=True)


# --------------------------------------------------------------------------- pieces

def inner_split(target_y: np.ndarray, groups: np.ndarray | None, rows: np.ndarray, share: float, seed: int):
    """(fit rows, stop rows) of a fold's training part: stratified (whole groups with --group-col)."""
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    y = target_y[rows]
    placeholder = np.zeros((len(rows), 1))
    if groups is not None and len(np.unique(groups[rows])) >= 2:
        splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        fit, stop = next(splitter.split(placeholder, y, groups[rows]))
    else:
        counts = np.bincount(y)
        n_stop = max(int(round(share * len(rows))), int((counts > 0).sum()))
        if counts[counts > 0].min() >= 2 and n_stop < len(rows) - int((counts > 0).sum()):
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_stop, random_state=seed)
        else:
            splitter = ShuffleSplit(n_splits=1, test_size=share, random_state=seed)
        fit, stop = next(splitter.split(placeholder, y))
    if not len(fit) or not len(stop):
        raise InputError(f"a fold's training part of {len(rows)} rows is too small to hold out an early-stopping split; "
                         "pass fewer --folds or more labelled files")
    return np.sort(rows[fit]), np.sort(rows[stop])


def check_class_counts(data: LabelledFiles, n_folds: int) -> None:
    """Every class needs a row in each fold's training part and in its inner split."""
    counts = np.bincount(data.target.y, minlength=data.target.n_classes)
    rare = [(data.target.classes[k], int(c)) for k, c in enumerate(counts) if c < 2]
    if rare:
        shown = ", ".join(f"'{name}': {c}" for name, c in rare[:5])
        raise InputError(f"{len(rare)} class(es) have fewer than 2 labelled files ({shown}): too few to fine-tune on "
                         f"with --folds {n_folds}; add examples or drop those rows from the labels")


def load_backbone_for(config: FinetuneConfig):
    """The image backbone with its offline weights (audio runs feed it log-mel images)."""
    from pipelines.backbones.names import resolve_name
    from pipelines.backbones.registry import load_backbone

    resolved = resolve_name(config.backbone)
    if resolved.entry is not None and getattr(resolved.entry, "modality", "image") == "audio":
        raise ConfigError(f"--backbone {config.backbone}: finetune trains image backbones (audio goes through the "
                          "log-mel image route); pass an image backbone, e.g. --backbone efficientnet_lite0")
    return load_backbone(config.backbone, config.weights)


def resolved_data_config(data_config: dict, resolution: int | None) -> dict:
    config = {key: (list(value) if isinstance(value, tuple) else value) for key, value in data_config.items()}
    if resolution is not None:
        config["input_size"] = [int(config["input_size"][0]), resolution, resolution]
    config["input_size"] = [int(v) for v in config["input_size"]]
    return config


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def _fold_done(fold_dir: Path, key: str) -> dict | None:
    from pipelines.backbones.finetuned import NETWORK_META, NETWORK_WEIGHTS

    try:
        done = json.loads((fold_dir / DONE_FILE).read_text())
        if done.get("key") != key:
            return None
        for name in (NETWORK_WEIGHTS, NETWORK_META):
            if file_sha256(fold_dir / name) != done["files"][name]:
                return None
        return done
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


# --------------------------------------------------------------------------- the run

def finetune(config: FinetuneConfig, on_progress: Notify | None = None,
             on_stop_rows: StopRowsHook | None = None) -> FinetuneResult:
    """Fine-tune one network per fold, write the run directory, return the scores.

    on_progress(kind, message, data): progress (see pipelines.finetune.loop.Notify).
    on_stop_rows(fold, rows): called with the row positions early stopping reads, before it
    reads them (an assertion hook: tests check they never include the fold's validation rows)."""
    import torch

    from pipelines.finetune import loop
    from pipelines.finetune.augment import AudioInputs, ImageInputs
    from pipelines.finetune.model import build_network
    from pipelines.backbones.finetuned import NETWORK_META, NETWORK_WEIGHTS, NetworkMeta, save_network
    from pipelines.train.report import write_reports
    from pipelines.data.labels import target_columns
    from pipelines.train.train import _versions

    notify = on_progress or (lambda kind, message, data: None)
    started = time.perf_counter()
    keep_freed_memory()  # large activation blocks reused, not unmapped and faulted in again (core/hardware)
    config.check()
    run_dir = Path(config.output)
    if run_dir.is_dir() and _manifest_kind(run_dir / RUN_MANIFEST) == RUN_KIND and not config.overwrite:
        raise InputError(f"{run_dir} already holds a finetune run; pass --overwrite or choose another -o")
    data = load_labelled_files(config)
    target = data.target
    notify("task", target.reason, {})
    names = metrics.metrics_for(target.task, config.metric)
    if config.folds_from:
        folds, fold_notes = cv.folds_from(config.folds_from, data.ids), []
        if data.groups is not None:
            cv.check_groups_within_folds(folds, data.groups, f"--folds-from {config.folds_from}")
        n_folds = int(folds.max()) + 1
    else:
        folds, fold_notes = cv.assign_folds(target, config.folds, config.seed, data.groups)
        n_folds = config.folds
    check_class_counts(data, n_folds)
    notes = data.notes + fold_notes
    for note in notes:
        notify("warning", note, {})

    backbone = load_backbone_for(config)
    data_config = resolved_data_config(backbone.data_config, config.resolution)
    audio = None
    if data.modality == "audio":
        from pipelines.finetune.audio import front_end_settings

        audio = front_end_settings(config.window)
        inputs = AudioInputs(data.items, audio, data_config, config.spec_augment)
    else:
        inputs = ImageInputs(data.items, data_config, config.hflip, config.auto_augment)
    runtime = loop.resolve_runtime(config.device, config.batch_size, config.workers)
    n_classes = target.n_classes
    template = build_network(copy.deepcopy(backbone.model), n_classes, config.n_train_layers, config.backbone, config.seed)
    mode = "cached" if config.cached else "end-to-end"

    prepare_run_dir(run_dir, config.overwrite, notify)
    if data.errors:
        _write_csv(run_dir / ERRORS_FILE, pd.DataFrame(data.errors, columns=["id", "path", "error"]))
    else:
        (run_dir / ERRORS_FILE).unlink(missing_ok=True)
    settings = {
        **{k: v for k, v in config.to_dict().items() if k not in ("inputs", "labels", "output", "overwrite", "cache_dir",
                                                                    "device", "workers", "folds_from", "limit")},
        "folds": n_folds, "timm_name": backbone.timm_name, "weights_source": backbone.weights_source,
        "weights_sha256": backbone.weights_sha256, "data_config": data_config,
        "audio": None if audio is None else audio.__dict__, "mode": mode,
    }
    cached = None
    if config.cached:
        from pipelines.finetune.cache import FeatureCache, cached_features

        cache_settings = {key: settings[key] for key in ("backbone", "timm_name", "weights_sha256", "train_layers",
                                                          "data_config", "audio", "hflip", "auto_augment",
                                                          "spec_augment", "views", "seed")}
        cache_settings["modality"] = data.modality
        cache = FeatureCache(Path(config.cache_dir) if config.cache_dir else run_dir / CACHE_DIR, cache_settings)
        lower = template.lower
        for unit in template.frozen:
            unit.to(runtime.device).eval()
        cached = cached_features(inputs, lower, cache, config.views, config.seed, runtime.device,
                                 runtime.batch_size or 64, notify)
        for unit in template.frozen:
            unit.to("cpu")
    if runtime.batch_size == 0:  # GPU auto: the largest batch that fits
        probe = loop.Feeder(template, inputs, target.y, runtime, cached)
        sample = cached[0][1][:1].float() if cached is not None else inputs.eval_inputs(0)[:1]
        template.param_groups(config.lr, config.head_lr_mult, config.weight_decay)
        runtime.batch_size = loop.auto_batch_size(probe, sample, n_classes)
        template.model.to("cpu")
        notify("warning", f"--batch-size auto: {runtime.batch_size}", {})
    notify("task", f"{mode} mode on {runtime.describe()}: {config.backbone} ({backbone.weights_source}), "
                   f"train layers {config.train_layers}, {data_config['input_size'][1]} px", {})

    key = json_digest({"settings": settings, "batch_size": runtime.batch_size, "ids": data.ids.tolist(),
                       "y": target.y.tolist(), "folds": folds.tolist(),
                       "groups": None if data.groups is None else data.groups.tolist()})
    oof = np.zeros((len(data.ids), n_classes))
    scores, networks, files = [], [], {}
    for k in range(n_folds):
        fold_dir = run_dir / fold_dir_name(k)
        fold_dir.mkdir(exist_ok=True)
        valid_rows = np.flatnonzero(folds == k)
        train_rows = np.flatnonzero(folds != k)
        done = _fold_done(fold_dir, key)
        if done is not None:
            oof[valid_rows] = np.asarray(done["proba"], dtype=np.float64)
            best_epoch, epochs_run, history = done["best_epoch"], done["epochs_run"], done["history"]
            notify("warning", f"fold {k}: reused from the interrupted run", {"fold": k})
        else:
            fit_rows, stop_rows = inner_split(target.y, data.groups, train_rows, config.stop_share, config.seed + k)
            network = build_network(copy.deepcopy(backbone.model), n_classes, config.n_train_layers, config.backbone,
                                    config.seed + k)
            feeder = loop.Feeder(network, inputs, target.y, runtime, cached)
            outcome = loop.train_fold(k, fit_rows, stop_rows, valid_rows, feeder, n_classes, config, fold_dir, key,
                                      notify, on_stop_rows, config.epochs * (n_folds - k - 1))
            oof[valid_rows] = outcome.proba
            best_epoch, epochs_run, history = outcome.best_epoch, outcome.epochs_run, outcome.history
            meta = NetworkMeta(
                backbone=config.backbone, timm_name=_plain_timm_name(backbone.timm_name), num_classes=n_classes,
                classes=list(target.classes), task=target.task, modality=data.modality, data_config=data_config,
                audio=audio, hflip_tta_ok=bool(config.hflip and data.modality == "image"), fold=k,
                best_epoch=int(best_epoch), train_layers="all" if config.n_train_layers is None else config.n_train_layers,
            )
            save_network(fold_dir, network.model, meta)
            write_json_atomic(fold_dir / DONE_FILE, {
                "key": key, "proba": oof[valid_rows], "best_epoch": best_epoch, "epochs_run": epochs_run,
                "history": history, "files": {name: file_sha256(fold_dir / name) for name in (NETWORK_WEIGHTS, NETWORK_META)},
            })
            loop.clear_checkpoint(fold_dir)
            del network, feeder
        fold_scores = metrics.score(target.task, target.y[valid_rows], oof[valid_rows], names)
        scores.append({"fold": k, "n_train": int(len(train_rows)), "n_valid": int(len(valid_rows)),
                       "best_epoch": int(best_epoch), "epochs": int(epochs_run), **fold_scores})
        notify("fold", f"fold {k}: {names[0]} {fold_scores[names[0]]:.4f} (best epoch {best_epoch} of {epochs_run})", {"fold": k})
        networks.append(fold_dir_name(k))
        for name in (NETWORK_WEIGHTS, NETWORK_META):
            files[f"{fold_dir_name(k)}/{name}"] = file_sha256(fold_dir / name)

    mean, std = metrics.summarize(scores, names)
    oof_scores = metrics.score(target.task, target.y, oof, names)
    _write_csv(run_dir / "folds.csv", pd.DataFrame({"id": data.ids, "fold": folds}))
    frame = pd.concat([pd.DataFrame({"id": data.ids, "fold": folds}), pd.DataFrame(oof, columns=target.classes)], axis=1)
    _write_csv(run_dir / "oof.csv", frame)
    provenance = {"oof": metrics.PROVENANCE_OOF,
                  "early_stopping": "an inner split of each fold's training part; the fold's own rows are only predicted"}
    scores_doc = {"metric": names[0], "metrics": names, "folds": scores, "mean": mean, "std": std, "oof": oof_scores,
                  "threshold": None, "provenance": provenance}
    write_json_atomic(run_dir / "scores.json", scores_doc)
    reports = write_reports(run_dir, target.task, target.classes, target.y, oof, scores_doc)
    labels_path = None if config.labels is None else Path(config.labels)
    from pipelines.data.inputs import listing_fingerprint

    manifest = {
        "olymp_format": 1, "kind": RUN_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "modality": data.modality,
        "inputs": {"path": str(Path(config.inputs).resolve()), **listing_fingerprint(config.inputs, data.modality),
                   "errors": len(data.errors), "errors_file": ERRORS_FILE if data.errors else None},
        "labels": {
            "path": None if labels_path is None else str(labels_path.resolve()),
            "sha256": None if labels_path is None else file_sha256(labels_path),
            "from_folders": config.labels_from_folders, "id_form": data.id_form, "id_extension": data.id_extension,
            "id_col": config.id_col, "target_col": config.target_col, "target_cols": target_columns(config.target_col),
            "label_sep": None, "group_col": config.group_col,
        },
        "task": target.task, "task_reason": target.reason, "classes": target.classes, "prior": prior(target),
        "metric": names[0], "metrics": names,
        "folds": n_folds, "seed": config.seed,
        "folds_from": None if config.folds_from is None else str(Path(config.folds_from).resolve()),
        "fold_hash": cv.fold_hash(data.ids, folds),
        "n_rows": int(len(data.ids)),
        "networks": networks,
        "finetune": {**settings, "batch_size": runtime.batch_size, "device": str(runtime.device),
                     "precision": runtime.describe()},
        "reports": reports, "provenance": provenance, "files_sha256": files,
    }
    if config.limit is not None:
        manifest["limit"] = config.limit
    write_json_atomic(run_dir / RUN_MANIFEST, manifest)
    (run_dir / MARKER).unlink(missing_ok=True)
    for k in range(n_folds):
        (run_dir / fold_dir_name(k) / DONE_FILE).unlink(missing_ok=True)
    return FinetuneResult(
        run_dir=run_dir, task=target.task, task_reason=target.reason, classes=list(target.classes), metric=names[0],
        metrics=names, head=f"finetune {config.backbone}", fold_scores=scores, mean=mean, std=std, oof=oof_scores,
        n_rows=int(len(data.ids)), n_errors=len(data.errors), mode=mode, device=runtime.describe(), warnings=notes,
        seconds=time.perf_counter() - started,
    )


def _plain_timm_name(timm_name: str) -> str:
    """What timm.create_model rebuilds (the architecture, without a pretrained tag)."""
    return timm_name.split(".")[0]
