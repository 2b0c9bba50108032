"""`train-head`: embeddings + a labels CSV -> cross-validated head, out-of-fold predictions, a run dir.

Steps, each a small function: read labels -> join embedding sets on id -> infer the task ->
assign folds -> fit one head per fold -> write the run directory:

    RUN_DIR/
      manifest.json   versions, inputs (+ fingerprints, labels SHA-256), task, classes, head, folds
      folds.csv       id, fold
      oof.csv         id, fold, one probability column per class or label (or `prediction`)
      scores.json     every metric per fold, mean, std and on all out-of-fold rows (+ per seed); per fold
                      what tuning chose ("tuning"); with --head auto every head's OOF scores ("head_choice")
      models/fold-K.txt | fold-K.json | fold-K.safetensors (+ .json)   one model per fold
                      (LightGBM text, or a JSON list of them for multilabel / logreg JSON / mlp);
                      fold-K-seed-S.* with several --seeds (OOF = their mean)
      transforms/fold-K.npz   with --normalize/--pca: the feature transform fitted on fold K's
                      training part (plain arrays, no pickle), applied again by predict
      per_class.csv, confusion.png, fold_scores.png, pred_vs_true.png   reports (pipelines/train/report.py)
      .olymp-run-in-progress.json, models/fold-K.done.json   only while train-head runs (or after a
                      kill): the folder is an olymp run, and fold K is whole and reusable on resume

Every file is written atomically (pipelines.core.io) and manifest.json last, with the SHA-256 of
each model and transform file: it marks the run complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data import cv
from pipelines.data import metrics
from pipelines.data.embeddings import EmbeddingSet, fingerprint, read_embeddings, read_errors
from pipelines.core.config import check_instance
from pipelines.core.durations import parse_duration
from pipelines.core.errors import ConfigError, InputError
from pipelines.core.io import json_ready, write_atomic, write_json_atomic
from pipelines.train.features import TRANSFORMS_DIR, FeatureSpec, FeatureTransform, transform_file
from pipelines.core.hashing import file_sha256
from pipelines.heads import get_head
from pipelines.data.labels import (check_label_source, read_labels_noted,
                                   target_columns, target_from_labels)
from pipelines.data.sampling import subsample_rows
from pipelines.heads.tuning import TuneSpec, tune
from pipelines.data.ids import FROM_FOLDERS, common_extension, file_extensions, folder_labels, match_ids
from pipelines.train.report import write_reports
from pipelines.data.tasks import TASKS, Target, prior
from pipelines.core.versions import package_versions
from pipelines.train.rundir import DONE_SUFFIX, MODELS_DIR, RUN_FORMAT, RUN_MANIFEST, RUN_MARKER, check_run_dir, prepare_run_dir


# on_progress(kind, message): kind is "task" (the inferred task and why), "fold" (a fold's main
# score), "round" (a head's progress inside a fold: round/epoch, inner-validation score, what
# tuning chose), "head" (--head auto: which head won) or "warning"; the CLI decides how to show each.
Progress = Callable[[str, str], None]


@dataclass
class TrainConfig:
    # --- inputs
    embeddings: list[str]  # embedding dirs; joined on id, features concatenated in this order
    labels: str | None  # CSV with an id column and a target column; None with labels_from_folders
    output: str  # the run directory to create
    id_col: str = "id"  # id column of the labels CSV (matches the embeddings' ids)
    target_col: str = "label"  # target column; "a,b,c" names one 0/1 column per label (multilabel)
    label_sep: str | None = None  # the target column holds labels joined by this (multilabel), e.g. " "
    group_col: str | None = None  # rows sharing a group stay in one fold
    labels_from_folders: bool = False  # no CSV: each file's parent folder name is its class (as ImageFolder)
    # --- what to fit
    task: str | None = None  # binary | multiclass | regression | multilabel; None: inferred from the target
    threshold: float | None = None  # multilabel decision threshold; None: tuned on the OOF for micro-F1
    metric: str | None = None  # reported first and watched for early stopping; None: task default
    head: str = "logreg"  # logreg | mlp | lgbm | auto (the best of the fast heads on the same folds; README)
    head_params: dict = field(default_factory=dict)  # overrides of the head's defaults (fixed: never tuned)
    tune: str | int = "auto"  # auto | off | N: the head's parameters searched inside each fold (pipelines.heads.tuning)
    time_budget: str | None = None  # time for that search, whole run ("90s", "10m"), shared out per fold (and head); None: --tune's count
    # --- cross-validation
    folds: int = 5  # number of folds
    seed: int = 42  # fold shuffling and model seeds
    seeds: list[int] | None = None  # one model per seed per fold, predictions averaged; None: [seed]
    folds_from: str | None = None  # reuse this run's folds.csv (same ids) instead of drawing folds
    # --- features (fitted inside each fold, on its training part only)
    normalize: str = "none"  # none | l2 | standard, per embedding source
    pca: int | None = None  # PCA components after normalization; None: no PCA
    # --- output
    overwrite: bool = False  # replace an existing run in `output`
    limit: int | None = None  # a stratified subsample of N labelled rows (seeded), for smoke runs

    @property
    def tune_spec(self) -> TuneSpec:
        return TuneSpec.parse(self.tune)

    @property
    def time_budget_s(self) -> float | None:
        return None if self.time_budget is None else parse_duration(str(self.time_budget))

    @property
    def features(self) -> FeatureSpec:
        """--normalize/--pca as one spec (checked, described and fitted per fold)."""
        return FeatureSpec(self.normalize, self.pca)


@dataclass
class TrainResult:
    run_dir: Path
    task: str
    task_reason: str  # e.g. "multiclass: 10 distinct string labels"
    classes: list[str] | None
    metric: str  # the main metric (first in `metrics`)
    metrics: list[str]
    head: str
    fold_scores: list[dict]  # per fold: fold, n_train, n_valid, head info, every metric
    mean: dict[str, float]
    std: dict[str, float]
    oof: dict[str, float]  # every metric on all out-of-fold predictions at once
    n_rows: int
    n_features: int
    warnings: list[str]
    seconds: float
    seed_scores: list[dict] = field(default_factory=list)  # with several --seeds: each seed's OOF metrics
    threshold: float | None = None  # multilabel decision threshold (tuned or given)
    tuning: list[dict | None] = field(default_factory=list)  # per fold: the chosen params, inner scores, seconds
    head_choice: dict | None = None  # --head auto: every candidate head's OOF scores and the winner

    def summary(self) -> dict:
        """JSON-ready digest (what `train-head --json` prints)."""
        return json_ready({
            "run_dir": str(self.run_dir), "task": self.task, "task_reason": self.task_reason,
            "classes": self.classes, "metric": self.metric, "head": self.head,
            "n_rows": self.n_rows, "n_features": self.n_features, "folds": self.fold_scores,
            "mean": self.mean, "std": self.std, "oof": self.oof, "seeds": self.seed_scores,
            "warnings": self.warnings, "seconds": round(self.seconds, 3), "threshold": self.threshold,
            "tuning": self.tuning, "head_choice": self.head_choice,
        })


# --------------------------------------------------------------------------- inputs

def _check_complete(path: Path, manifest: dict) -> None:
    status = manifest.get("status")
    if status is not None and status != "complete":
        raise InputError(
            f"{path} is an unfinished extraction (status '{status}'); re-run the same olymp extract command to finish it"
        )


def load_sets(paths: list[str]) -> list[EmbeddingSet]:
    sets = []
    for path in paths:
        emb = read_embeddings(path)
        _check_complete(Path(path), emb.manifest)
        index = pd.Index(emb.ids)
        if not index.is_unique:
            example = index[index.duplicated()][0]
            raise InputError(f"{path} holds id '{example}' more than once; re-extract it into a fresh directory")
        sets.append(emb)
    return sets


def join(
    ids: np.ndarray, sets: list[EmbeddingSet], paths: list[str], labels_name: str = "the labels"
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Rows (of `ids`) present in every set, and their concatenated features (float32).
    Label ids may name files by relative path or bare stem, with or without extension
    (pipelines.data.ids): the form that matches every row is chosen per set.
    Returns (row positions into `ids`, X, warnings, the id form of the first set)."""
    keep = np.ones(len(ids), dtype=bool)
    positions, notes, forms = [], [], []
    for emb, path in zip(sets, paths):
        errors = read_errors(path)
        known = {str(i) for i in emb.ids}
        failed = [row["id"] for row in errors if row["id"] not in known]
        universe = [*emb.ids.tolist(), *failed]  # failed inputs still tell which form the labels use
        match = match_ids(
            ids, universe, lambda emb=emb, errors=errors: file_extensions(emb.manifest, universe, errors),
            labels_name, path,
        )
        forms.append(match.form)
        pos = np.where(match.positions < len(emb.ids), match.positions, -1)
        found = pos >= 0
        n_missing = int((~found).sum())
        if n_missing:
            n_failed = int(((match.positions >= len(emb.ids))).sum())
            reason = f", {n_failed} of them failed extraction (see {path}/_errors.csv)" if n_failed else ""
            example = ids[~found][0]
            notes.append(
                f"{n_missing} labelled ids have no embedding in {path}{reason} (e.g. '{example}', "
                f"matched as {match.description}); they are left out"
            )
        keep &= found
        positions.append(pos)
    rows = np.flatnonzero(keep)
    blocks = [emb.vectors[pos[rows]] for emb, pos in zip(sets, positions)]
    X = blocks[0] if len(blocks) == 1 else np.hstack(blocks)
    return rows, np.ascontiguousarray(X, dtype=np.float32), notes, forms[0]


# --------------------------------------------------------------------------- output

def _versions() -> dict:
    found = package_versions("torch", "lightgbm", "scikit-learn", "numpy", "pandas")
    if found["olymp"] == "not installed":  # a source checkout: the version it declares
        import tomllib

        try:
            pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
            found["olymp"] = tomllib.loads(pyproject.read_text())["project"]["version"] + "+source"
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            pass
    return found


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def _oof_frame(ids, folds, oof, target: Target) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids, "fold": folds})
    if target.classes:
        probabilities = pd.DataFrame(oof, columns=target.classes)
        return pd.concat([frame, probabilities], axis=1)
    frame["prediction"] = oof
    return frame


# --------------------------------------------------------------------------- the run

def _option(name: str) -> str:
    return {"head_params": "--param", "embeddings": "EMBEDDINGS"}.get(name, "--" + name.replace("_", "-"))


def _validate(config: TrainConfig) -> None:
    check_instance(config, "head", _option)  # types first (a TOML [head] table, a notebook's values)
    if not config.embeddings:
        raise ConfigError("no embedding directory given; e.g. olymp train-head train_emb/ --labels labels.csv -o runs/a")
    if config.task is not None and config.task not in TASKS:
        raise ConfigError(f"unknown task '{config.task}'; pass --task with one of: {', '.join(TASKS)}")
    if config.folds < 2:
        raise ConfigError(f"--folds {config.folds} leaves nothing to validate on; pass --folds 2 or more")
    if config.seeds is not None and (not config.seeds or len(set(config.seeds)) != len(config.seeds)):
        raise ConfigError(f"--seeds needs distinct integers, e.g. --seeds 0,1,2 (got {config.seeds})")
    if config.seed < 0 or any(seed < 0 for seed in config.seeds or []):
        raise ConfigError("seeds must be 0 or more (numpy refuses negative seeds); e.g. --seed 42 or --seeds 0,1,2")
    config.features.check()
    if config.limit is not None and config.limit < config.folds:
        raise ConfigError(f"--limit {config.limit} is fewer rows than --folds {config.folds}; pass a larger --limit")
    if config.threshold is not None and not 0.0 < config.threshold < 1.0:
        raise ConfigError(f"--threshold {config.threshold} is not a probability; pass a value in (0, 1), e.g. --threshold 0.3")
    check_label_source(config.labels, config.labels_from_folders, config.group_col)
    if config.labels_from_folders and config.label_sep is not None:
        raise ConfigError("--labels-from-folders gives one class per file; drop --label-sep")
    config.tune_spec  # noqa: B018 (a bad --tune fails before any work)
    config.time_budget_s  # noqa: B018 (and a bad --time-budget)
    if config.time_budget is not None and config.tune_spec.mode == "off":
        raise ConfigError("--time-budget limits the tuning search, and --tune off has none; drop one of them")
    if config.head == AUTO_HEAD:
        if config.head_params:
            raise ConfigError("--param sets one head's parameter; with --head auto, drop --param (or pass --head logreg|mlp|lgbm with it)")
    else:
        get_head(config.head)  # unknown head fails before any work


@dataclass
class TrainingData:
    ids: np.ndarray  # object array of str: labelled ids with embeddings in every set
    X: np.ndarray  # float32 (N, sum of dims), sets concatenated in the given order
    target: Target
    groups: np.ndarray | None  # object array, or None without --group-col
    sets: list[EmbeddingSet]
    notes: list[str]  # rows left out and why
    id_form: str = FROM_FOLDERS  # how the labels spell a file's id (pipelines.data.ids.FORMS)
    id_extension: str | None = None  # the one extension every label id carries (forms with extension)


def load_training_data(config: TrainConfig) -> TrainingData:
    """Labels joined to every embedding set, and the task they pose."""
    paths = [str(p) for p in config.embeddings]
    if config.labels_from_folders:
        return _folder_training_data(config, paths)
    labels_path = Path(config.labels)
    labels, notes = read_labels_noted(labels_path, config.id_col, config.target_col, config.group_col,
                                      keep_empty=config.label_sep is not None)
    label_ids = labels[config.id_col].to_numpy(dtype=object)
    sets = load_sets(paths)
    rows, X, join_notes, form = join(label_ids, sets, paths, labels_path.name)
    groups = None if config.group_col is None else labels[config.group_col].to_numpy(dtype=object)[rows]
    target = target_from_labels(labels, rows, config.target_col, config.label_sep, config.task)
    return TrainingData(label_ids[rows], X, target, groups, sets, notes + join_notes, form,
                        common_extension(label_ids, form))


def _folder_training_data(config: TrainConfig, paths: list[str]) -> TrainingData:
    """--labels-from-folders: every embedded file of the first set, its parent folder its class."""
    sets = load_sets(paths)
    ids = sets[0].ids
    classes = folder_labels(ids, paths[0])
    labels = pd.DataFrame({config.id_col: ids, config.target_col: classes})
    rows, X, notes, _ = join(ids, sets, paths, paths[0])
    target = target_from_labels(labels, rows, config.target_col, None, config.task)
    return TrainingData(ids[rows], X, target, None, sets, notes, FROM_FOLDERS)


def limit_rows(data: TrainingData, limit: int, seed: int) -> TrainingData:
    """`data` cut to a seeded, stratified (by class) subsample of `limit` rows."""
    n = len(data.ids)
    rows = subsample_rows(data.target.y, limit, seed, data.target.is_classification)
    if len(rows) == n:
        return data
    target = replace(data.target, y=data.target.y[rows])
    groups = None if data.groups is None else data.groups[rows]
    note = f"--limit {limit}: training on a stratified subsample of {limit} of {n} rows (seed-fixed)"
    return TrainingData(data.ids[rows], data.X[rows], target, groups, data.sets, data.notes + [note])


@dataclass
class FoldResults:
    oof: np.ndarray  # (N, K) probabilities or (N,) values, each row from the fold that validated it
    scores: list[dict]  # per fold: fold, n_train, n_valid, head info, every metric
    model_files: list[str]  # relative to the run dir
    head_params: dict  # the params the head actually used
    notes: list[str]
    model_folds: list[int] = field(default_factory=list)  # the fold of each model file
    seed_oof: dict[int, np.ndarray] = field(default_factory=dict)  # per model seed, before averaging
    transform_files: list[str] | None = None  # per fold (--normalize/--pca), relative to the run dir
    threshold: float | None = None  # multilabel decision threshold, set by decide_threshold
    decided_at: np.ndarray | None = None  # multilabel: each row's threshold for the reported F1 (cross-fitted)
    threshold_source: str | None = None  # multilabel: "cross-fitted" (tuned) or "given" (--threshold)
    tuning: list[dict | None] = field(default_factory=list)  # per fold: what tuning chose (None: --tune off)


def model_seeds(config: TrainConfig) -> list[int]:
    return list(config.seeds) if config.seeds else [config.seed]


def _model_file(fold: int, seed: int, seeds: list[int], suffix: str) -> str:
    name = f"fold-{fold}" if len(seeds) == 1 else f"fold-{fold}-seed-{seed}"
    return f"{MODELS_DIR}/{name}{suffix}"


def _merge_info(infos: list[dict]) -> dict:
    """One fold's head info over its seeds: numbers averaged, flags all-true."""
    merged = {}
    for key in infos[0]:
        values = [info.get(key) for info in infos]
        if all(isinstance(v, bool) for v in values):
            merged[key] = all(values)
        elif all(isinstance(v, (int, float)) for v in values):
            mean = float(np.mean(values))
            merged[key] = int(round(mean)) if all(isinstance(v, int) for v in values) else mean
        else:
            merged[key] = values[-1]
    return merged


def model_companions(run_dir: Path, model_file: str) -> list[str]:
    """A model file and the files saved with it (mlp: its architecture JSON), relative to the run dir."""
    files = [model_file]
    sidecar = Path(model_file).with_suffix(".json")
    if sidecar.as_posix() != model_file and (run_dir / sidecar).is_file():
        files.append(sidecar.as_posix())
    return files


def files_sha256(run_dir: Path, names: list[str]) -> dict[str, str]:
    return {name: file_sha256(run_dir / name) for name in names}


def fold_key(data: TrainingData, folds: np.ndarray, config: TrainConfig, params: dict, names: list[str]) -> str:
    """What a fold's models depend on: the features, targets and fold assignment themselves (not
    their file names) and every setting of the head. A resumed run reuses a fold only under it."""
    digest = hashlib.blake2b(digest_size=16)
    groups = () if data.groups is None else (data.groups,)  # they shape the heads' inner splits
    for array in (data.X, np.asarray(data.target.y), np.asarray(folds), *groups):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes() if array.dtype != object else json.dumps(array.tolist()).encode())
    settings = {
        "head": config.head, "params": params, "seeds": model_seeds(config), "task": data.target.task,
        "classes": data.target.classes, "metrics": names, "features": [config.normalize, config.pca],
        "tune": config.tune_spec.describe(), "fixed": sorted(config.head_params), "time_budget": config.time_budget,
        "ids": data.ids.tolist(),
    }
    digest.update(json.dumps(json_ready(settings), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _done_file(k: int) -> str:
    return f"{MODELS_DIR}/fold-{k}{DONE_SUFFIX}"


def _reusable_fold(run_dir: Path, k: int, key: str | None) -> dict | None:
    """Fold k's record from an interrupted run when it was made under `key` and its files are whole."""
    if key is None:
        return None
    try:
        done = json.loads((run_dir / _done_file(k)).read_text())
        if done.get("key") != key:
            return None
        if any(not (run_dir / name).is_file() or file_sha256(run_dir / name) != sha
               for name, sha in done["files"].items()):
            return None
        return done
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


def fit_folds(
    head_cls, target: Target, X: np.ndarray, folds: np.ndarray, names: list[str], config: TrainConfig,
    run_dir: Path, notify: Progress, source_dims: list[int], key: str | None = None,
    groups: np.ndarray | None = None, budget_s: float | None = None,
) -> FoldResults:
    """Per fold: fit the feature transform and one head per seed on the other folds, predict
    its own rows (mean over seeds), save transform and models. A head sees the training part
    only (early-stopping heads split it themselves); the fold's rows are only predicted. With
    `key`, a fold an interrupted run finished under the same key is loaded instead of fitted again.
    `budget_s`: the tuning seconds for all folds (None: no --time-budget), each fold getting an
    even share of what the earlier ones left."""
    y = target.y
    oof = np.zeros((len(y), target.n_classes)) if target.classes else np.zeros(len(y))
    seeds = model_seeds(config)
    seed_oof = {seed: np.zeros_like(oof) for seed in seeds}
    spec = config.features
    scores, model_files, model_folds, notes, head_params, tunings = [], [], [], [], {}, []
    transform_files = None if spec.is_identity else []
    budget_left = budget_s  # tuning seconds left to this head's folds
    for k in range(config.folds):
        train_idx, valid_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        X_train, X_valid = X[train_idx], X[valid_idx]
        done = _reusable_fold(run_dir, k, key)
        if done is not None:
            if transform_files is not None:
                X_valid = FeatureTransform.load(run_dir / transform_file(k)).transform(X_valid)
                transform_files.append(transform_file(k))
            for seed, model_file in zip(seeds, done["models"]):
                seed_oof[seed][valid_idx] = head_cls.load(run_dir / model_file, target.task, target.n_classes).predict(X_valid)
                model_files.append(model_file)
                model_folds.append(k)
            infos, head_params = done["infos"], done["params"]
            tunings.append(done.get("tuning"))
            notify("warning", f"fold {k}: reused from the interrupted run")
        else:
            written = []
            if transform_files is not None:  # fitted on the training part only: validation rows never leak in
                transform = FeatureTransform.fit(X_train, source_dims, spec)
                X_train, X_valid = transform.transform(X_train), transform.transform(X_valid)
                (run_dir / TRANSFORMS_DIR).mkdir(exist_ok=True)
                transform.save(run_dir / transform_file(k))
                transform_files.append(transform_file(k))
                written.append(transform_file(k))
            infos, fold_models = [], []
            # tuned on the training part only (an inner split of it); every seed's model uses the choice
            train_groups = None if groups is None else groups[train_idx]
            fold_budget = None if budget_left is None else max(0.0, budget_left) / (config.folds - k)
            tuning_started = time.perf_counter()
            tuned = tune(head_cls, target.task, target.n_classes, config.head_params, names[0], config.seed,
                         X_train, y[train_idx], train_groups, config.tune_spec,
                         lambda message, k=k: notify("round", f"fold {k}: {message}"), fold_budget)
            if budget_left is not None:
                budget_left -= time.perf_counter() - tuning_started
            tunings.append(tuned.record)
            for seed in seeds:
                head = head_cls(target.task, target.n_classes, {**config.head_params, **tuned.params}, names[0], seed)
                head.fit(X_train, y[train_idx], None if groups is None else groups[train_idx],
                         lambda message, k=k: notify("round", f"fold {k}: {message}"))
                seed_oof[seed][valid_idx] = head.predict(X_valid)
                model_file = _model_file(k, seed, seeds, head.suffix)
                head.save(run_dir / model_file)
                model_files.append(model_file)
                fold_models.append(model_file)
                model_folds.append(k)
                written.extend(model_companions(run_dir, model_file))
                infos.append(head.info)
                head_params = head.params
            if key is not None:  # written after the fold's files: it vouches for them
                write_json_atomic(run_dir / _done_file(k), {
                    "key": key, "models": fold_models, "files": files_sha256(run_dir, written),
                    "infos": infos, "params": head_params, "tuning": tuned.record,
                })
        oof[valid_idx] = np.mean([seed_oof[seed][valid_idx] for seed in seeds], axis=0)
        info = _merge_info(infos)
        if info.get("converged") is False:
            notes.append(f"fold {k}: {config.head} did not converge; pass --param max_iter=5000 (or a smaller C)")
            notify("warning", notes[-1])
        fold = metrics.score(target.task, y[valid_idx], oof[valid_idx], names)
        scores.append({"fold": k, "n_train": len(train_idx), "n_valid": len(valid_idx), **info, **fold})
        notify("fold", f"fold {k}: {names[0]} {fold[names[0]]:.4f}")
    return FoldResults(oof, scores, model_files, head_params, notes, model_folds, seed_oof, transform_files,
                       tuning=tunings)


def run_manifest(
    config: TrainConfig, data: TrainingData, names: list[str], fitted: FoldResults, fold_hash: str | None = None
) -> dict:
    labels_path = None if config.labels is None else Path(config.labels)
    target = data.target
    return {
        "olymp_format": RUN_FORMAT,
        "kind": "head_run",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "embeddings": [
            {
                "path": str(Path(path).resolve()),
                "fingerprint": fingerprint(emb.manifest),
                "backbone": emb.manifest.get("backbone"),
                "weights": emb.manifest.get("weights"),
                "weights_source": emb.manifest.get("weights_source"),
                "embedding_dim": emb.dim,
                # how extract was run: predict re-runs it the same way on raw test inputs
                "settings": emb.manifest.get("settings", {}),
            }
            for emb, path in zip(data.sets, config.embeddings)
        ],
        "labels": {
            "path": None if labels_path is None else str(labels_path.resolve()),
            "sha256": None if labels_path is None else file_sha256(labels_path),
            "from_folders": config.labels_from_folders,
            "id_form": data.id_form,  # how the labels spell ids; predict writes test ids the same way
            "id_extension": data.id_extension,
            "id_col": config.id_col,
            "target_col": config.target_col,
            "target_cols": target_columns(config.target_col),
            "label_sep": config.label_sep,
            "group_col": config.group_col,
        },
        "task": target.task,
        "task_reason": target.reason,
        "classes": target.classes,
        "prior": prior(target),
        "metric": names[0],
        "metrics": names,
        **_decision(target, fitted),
        "head": {"name": config.head, "params": fitted.head_params},
        "folds": config.folds,
        "seed": config.seed,
        "folds_from": None if config.folds_from is None else str(Path(config.folds_from).resolve()),
        "fold_hash": fold_hash,
        "seeds": model_seeds(config),
        "features": {
            **config.features.describe([emb.dim for emb in data.sets]),
            "transforms": fitted.transform_files,
        },
        "n_rows": int(len(data.ids)),
        "n_features": int(data.X.shape[1]),
        "models": fitted.model_files,
        "model_folds": fitted.model_folds,
    }


def _decision(target: Target, fitted: FoldResults) -> dict:
    """Multilabel only: the run's threshold, and whether predict falls back to the top label
    (when every training row has at least one, an empty prediction is never right)."""
    if not target.is_multilabel:
        return {}
    return {
        "threshold": fitted.threshold, "threshold_source": fitted.threshold_source,
        "at_least_one_label": bool((target.y.sum(axis=1) > 0).all()),
    }


def decide_threshold(target: Target, folds: np.ndarray, fitted: FoldResults, names: list[str], given: float | None) -> None:
    """Multilabel: the threshold predict uses is --threshold, or tuned on all OOF rows. The
    reported F1 (per fold and on all OOF rows) is cross-fitted: fold k's rows are decided at a
    threshold tuned on the other folds' OOF rows, so no F1 is measured on the rows that chose it."""
    if not target.is_multilabel:
        return
    if given is None:
        fitted.threshold = metrics.tune_threshold(target.y, fitted.oof)
        fitted.decided_at, fold_thresholds = metrics.cross_fit_threshold(target.y, fitted.oof, folds)
        fitted.threshold_source = "cross-fitted"
    else:
        fitted.threshold, fitted.threshold_source = given, "given"
        fitted.decided_at, fold_thresholds = np.full(len(folds), float(given)), {}
    at_threshold = [name for name in names if name in metrics.THRESHOLD_METRICS]
    for fold in fitted.scores:
        rows = folds == fold["fold"]
        fold.update(metrics.score(target.task, target.y[rows], fitted.oof[rows], at_threshold, fitted.decided_at[rows]))
        fold["threshold"] = fold_thresholds.get(fold["fold"], fitted.threshold)


def score_provenance(fitted: FoldResults) -> dict[str, str]:
    """How the run's reported numbers were obtained (scores.json "provenance")."""
    how = {"oof": metrics.PROVENANCE_OOF}
    if fitted.threshold_source == "cross-fitted":
        how["threshold"] = metrics.PROVENANCE_THRESHOLD_CROSS_FITTED
    elif fitted.threshold_source == "given":
        how["threshold"] = metrics.PROVENANCE_THRESHOLD_GIVEN
    return how


# --------------------------------------------------------------------------- --head auto

AUTO_HEAD = "auto"
AUTO_DIR = f"{MODELS_DIR}/auto"  # inside the run dir while --head auto fits its candidates (one folder each)
AUTO_HEADS = ("logreg", "mlp", "lgbm")
# lgbm joins --head auto only where its fit stays within a few times logreg's on a CPU: rows x
# features x boosters per round (classes for multiclass, labels for multilabel) up to this.
# CIFAR-10 subset (2,000 x 1280 x 10 = 25.6M) and ESC-10 (400 x 1280 x 10 = 5.1M) are beyond it:
# there lgbm took 150-185 s against logreg's seconds and never scored best (README).
LGBM_AUTO_MAX_CELLS = 2_000_000


def auto_heads(target: Target, shape: tuple[int, int]) -> tuple[list[str], dict[str, str]]:
    """The heads --head auto fits, and those it leaves out with the reason."""
    n_rows, n_features = shape
    boosters = target.n_classes if target.task in ("multiclass", "multilabel") else 1
    cells = n_rows * n_features * max(1, boosters)
    if cells <= LGBM_AUTO_MAX_CELLS:
        return list(AUTO_HEADS), {}
    return ["logreg", "mlp"], {"lgbm": (
        f"{n_rows} rows x {n_features} features x {boosters} boosters is too slow for LightGBM on a CPU; "
        "--head lgbm tries it"
    )}


def auto_winner(candidates: list[dict], metric: str) -> str:
    """The head with the best OOF `metric` (NaN counts as the worst); ties: the faster."""
    greater = metrics.GREATER_IS_BETTER[metric]

    def rank(candidate: dict) -> tuple[float, float]:
        value = candidate["oof"][metric]
        value = -np.inf if value != value else (value if greater else -value)
        return round(float(value), 6), -candidate["seconds"]

    return max(candidates, key=rank)["head"]


def fit_auto(
    heads: list[str], left_out: dict[str, str], data: TrainingData, folds: np.ndarray, names: list[str],
    config: TrainConfig, run_dir: Path, notify: Progress, source_dims: list[int],
) -> tuple[str, FoldResults, dict]:
    """Every head on the same folds (each tuned as --tune says); the best OOF score of the main
    metric wins (ties: the faster). The winner's models and transforms become the run's own."""
    target, candidates, fits, tuning_spent = data.target, [], {}, 0.0
    for name in heads:
        head_cls = get_head(name)
        head_config = replace(config, head=name)
        params = head_cls.resolve_params(target.task, target.n_classes, {}, names[0], config.seed)
        where = run_dir / AUTO_DIR / name
        (where / MODELS_DIR).mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()

        def tagged(kind: str, message: str, name=name) -> None:
            notify(kind, f"{name}: {message}" if kind in ("fold", "round", "warning") else message)

        budget = config.time_budget_s
        if budget is not None:  # each head still to fit gets an even share of the time left
            budget = max(0.0, budget - tuning_spent) / (len(heads) - len(candidates))
        fitted = fit_folds(head_cls, target, data.X, folds, names, head_config, where, tagged, source_dims,
                           fold_key(data, folds, head_config, params, names), data.groups, budget)
        tuning_spent += sum(record.get("seconds", 0.0) for record in fitted.tuning if record)
        decide_threshold(target, folds, fitted, names, config.threshold)
        oof = metrics.score(target.task, target.y, fitted.oof, names, fitted.decided_at)
        fits[name] = fitted
        candidates.append({"head": name, "oof": oof, "seconds": round(time.perf_counter() - started, 3)})
    metric = names[0]
    winner = auto_winner(candidates, metric)
    for folder in (MODELS_DIR, TRANSFORMS_DIR):  # the winner's files become the run's own
        source = run_dir / AUTO_DIR / winner / folder
        if source.is_dir():
            for item in source.iterdir():
                destination = run_dir / folder / item.name
                destination.parent.mkdir(exist_ok=True)
                item.replace(destination)
    shutil.rmtree(run_dir / AUTO_DIR, ignore_errors=True)
    others = ", ".join(f"{c['head']} {c['oof'][metric]:.4f}" for c in candidates if c["head"] != winner)
    best = next(c for c in candidates if c["head"] == winner)
    line = f"--head auto: {winner} wins on oof {metric} ({best['oof'][metric]:.4f}; {others or 'no other head'})"
    if left_out:
        line += "; left out: " + ", ".join(left_out)
    notify("head", line)
    choice = {"requested": AUTO_HEAD, "winner": winner, "metric": metric, "candidates": candidates, "left_out": left_out}
    return winner, fits[winner], choice


def train(config: TrainConfig, on_progress: Progress | None = None) -> TrainResult:
    """Fit `config.head` on every fold, write the run directory, return scores."""
    notify = on_progress or (lambda kind, message: None)
    started = time.perf_counter()
    _validate(config)
    check_run_dir(Path(config.output), config.overwrite)  # refused before any work
    data = load_training_data(config)
    if config.limit is not None:
        data = limit_rows(data, config.limit, config.seed)
    target = data.target
    notify("task", target.reason)
    names = metrics.metrics_for(target.task, config.metric)
    if config.folds_from:
        folds, fold_notes = cv.folds_from(config.folds_from, data.ids), []
        if data.groups is not None:  # the other run may have drawn its folds without these groups
            cv.check_groups_within_folds(folds, data.groups, f"--folds-from {config.folds_from}")
        config = replace(config, folds=int(folds.max()) + 1)
    else:
        folds, fold_notes = cv.assign_folds(target, config.folds, config.seed, data.groups)
    notes = data.notes + fold_notes
    heads, left_out = auto_heads(target, data.X.shape) if config.head == AUTO_HEAD else ([config.head], {})
    for name in heads:  # fail early
        head_cls = get_head(name)
        params = head_cls.resolve_params(target.task, target.n_classes, config.head_params, names[0], config.seed)
    if config.head != AUTO_HEAD and len(model_seeds(config)) > 1 and not head_cls.is_stochastic(params):
        notes.append(
            f"{config.head} with these params is deterministic: --seeds {','.join(map(str, model_seeds(config)))} "
            "fit identical models; drop --seeds, or use a head/params with randomness (e.g. lgbm)"
        )
    for note in notes:
        notify("warning", note)
    smallest_training_part = min(int((folds != k).sum()) for k in range(config.folds))
    config.features.check_size(smallest_training_part, data.X.shape[1])

    run_dir = prepare_run_dir(config.output, config.overwrite, notify)
    source_dims = [emb.dim for emb in data.sets]
    head_choice = None
    if config.head == AUTO_HEAD:
        winner, fitted, head_choice = fit_auto(heads, left_out, data, folds, names, config, run_dir, notify, source_dims)
        config = replace(config, head=winner)
    else:
        key = fold_key(data, folds, config, params, names)
        fitted = fit_folds(head_cls, target, data.X, folds, names, config, run_dir, notify, source_dims, key, data.groups,
                           config.time_budget_s)
        decide_threshold(target, folds, fitted, names, config.threshold)
    mean, std = metrics.summarize(fitted.scores, names)
    oof_scores = metrics.score(target.task, target.y, fitted.oof, names, fitted.decided_at)

    # Every file is written whole (temp + rename); manifest.json last: it marks the run complete.
    _write_csv(run_dir / "folds.csv", pd.DataFrame({"id": data.ids, "fold": folds}))
    _write_csv(run_dir / "oof.csv", _oof_frame(data.ids, folds, fitted.oof, target))
    scores = {"metric": names[0], "metrics": names, "folds": fitted.scores, "mean": mean, "std": std, "oof": oof_scores,
              "threshold": fitted.threshold, "provenance": score_provenance(fitted),
              "tuning": fitted.tuning, "head_choice": head_choice}
    seed_scores = [
        {"seed": seed, **metrics.score(target.task, target.y, pred, names, fitted.decided_at)}
        for seed, pred in fitted.seed_oof.items()
    ] if len(fitted.seed_oof) > 1 else []
    if seed_scores:  # what each seed alone scores, next to their mean in "oof"
        scores["seeds"] = seed_scores
    write_json_atomic(run_dir / "scores.json", scores)
    manifest = run_manifest(config, data, names, fitted, cv.fold_hash(data.ids, folds))
    manifest["tuning"] = {"spec": config.tune_spec.describe(), "time_budget": config.time_budget, "folds": fitted.tuning}
    if head_choice is not None:
        manifest["head"]["choice"] = head_choice
    manifest["reports"] = write_reports(
        run_dir, target.task, target.classes, target.y, fitted.oof, scores,
        None if fitted.decided_at is None else fitted.decided_at[:, None],  # per-label F1 cross-fitted too
    )
    if config.limit is not None:
        manifest["limit"] = config.limit
    manifest["provenance"] = scores["provenance"]
    # SHA-256 of every model and transform file: predict refuses one changed or cut short since.
    model_names = [name for model in fitted.model_files for name in model_companions(run_dir, model)]
    manifest["files_sha256"] = files_sha256(run_dir, model_names + list(fitted.transform_files or []))
    write_json_atomic(run_dir / RUN_MANIFEST, manifest)
    (run_dir / RUN_MARKER).unlink(missing_ok=True)
    for k in range(config.folds):
        (run_dir / _done_file(k)).unlink(missing_ok=True)

    return TrainResult(
        run_dir=run_dir, task=target.task, task_reason=target.reason, classes=target.classes,
        metric=names[0], metrics=names, head=config.head, fold_scores=fitted.scores, mean=mean,
        std=std, oof=oof_scores, n_rows=int(len(data.ids)), n_features=int(data.X.shape[1]),
        warnings=notes + fitted.notes, seconds=time.perf_counter() - started, seed_scores=seed_scores,
        threshold=fitted.threshold, tuning=fitted.tuning, head_choice=head_choice,
    )


