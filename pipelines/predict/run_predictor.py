"""One train-head run on test embeddings, the machinery predict and blend prediction share:
extracting raw test inputs with the run's backbone (cached by content), checking the test
embeddings' fingerprints against training, averaging the fold models, the training prior for
ids without an embedding. predict.py dispatches on the manifest's kind to this (a run) or to
pipelines/ensemble/blend.py (a blend, which calls this once per member).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError, MismatchError, OlympError
from pipelines.core.hashing import json_digest
from pipelines.data.embeddings import FINGERPRINT_FIELDS, MANIFEST_NAME, fingerprint, read_errors, unrecorded_fields
from pipelines.data.inputs import listing_fingerprint
from pipelines.heads import get_head
from pipelines.predict.config import PredictConfig
from pipelines.train.features import FeatureTransform
from pipelines.train.rundir import REBUILD, RUN_MANIFEST, TEST_EMBEDDINGS_DIR, check_run_files
from pipelines.train.train import load_sets, model_companions


# on_progress(level, message): level is "info" or "warning".
Progress = Callable[[str, str], None]
LISTINGS_DIR = "listings"  # inside TEST_EMBEDDINGS_DIR: the stdin listings, named by their content


def is_embedding_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


def _extraction_weights(trained: dict) -> str | None:
    """ExtractConfig.weights that reproduce the training embeddings: an explicit `weights`
    entry, "random" for random init, an existing file, else None (offline auto-resolution;
    the fingerprint check afterwards catches any difference)."""
    if trained.get("weights"):
        return str(trained["weights"])
    source = trained.get("weights_source")
    if not source:
        return None
    if str(source).lower().startswith("random"):
        return "random"
    return str(source) if Path(str(source)).is_file() else None


def _shaping(trained: dict) -> dict:
    """Everything that shapes the embedding as in training (modality, audio windows, pooling);
    device and batch size are this machine's business."""
    settings = trained.get("settings") or {}
    shaping = {key: settings[key] for key in ("modality", "window", "hop", "pool", "max_image_pixels", "tta", "layers")
               if key in settings}
    # The precision is part of the embeddings' fingerprint: the training one, as resolved then.
    precision = (trained.get("fingerprint") or {}).get("precision")
    if precision:
        shaping["precision"] = precision
    return shaping


def cache_dir(source: str, trained: dict, run_dir: Path) -> Path:
    """Where a raw input is extracted: named by the content fingerprint of its listing (ids and
    each file's `file_fingerprint`) and the extraction settings, never by the folder's name alone,
    so other files under the same name get their own extraction and the same files reuse theirs."""
    shaping = _shaping(trained)
    listed = listing_fingerprint(source, shaping.get("modality", "auto"))
    key = {"listing": listed, "backbone": trained.get("backbone"), "weights": _extraction_weights(trained),
           "weights_sha256": (trained.get("fingerprint") or {}).get("weights_sha256"), "shaping": shaping}
    digest = json_digest(key)[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(source).stem or 'test'}-{trained.get('backbone')}")
    return run_dir / TEST_EMBEDDINGS_DIR / f"{stem}-{digest}"


def _complete_extraction(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_NAME).read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def extract_raw(source: str, trained: dict, run_dir: Path, config: PredictConfig, notify: Progress,
                extract_progress=None) -> str:
    """Run `olymp extract` on a raw input with the backbone/weights the run was trained on, into
    a cache keyed by the input files' content (a complete one is reused without extracting);
    `extract_progress` gets the runner's ExtractProgress events (the CLI draws a bar)."""
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction

    backbone = trained.get("backbone")
    if not backbone:
        raise InputError(
            f"the run's training embeddings ({trained.get('path')}) do not record a backbone; "
            f"extract {source} yourself with olymp extract and pass that directory"
        )
    output = cache_dir(source, trained, run_dir)
    # The same files under another name (a folder, then the same files piped on stdin) match too.
    output = next((found for found in sorted(output.parent.glob(f"*-{output.name.rsplit('-', 1)[-1]}"))
                   if _complete_extraction(found)), output)
    if _complete_extraction(output):
        notify("info", f"{source}: same files as an earlier predict, reusing {output}")
    else:
        notify("info", f"extracting {source} with {backbone} -> {output}")
        run_extraction(
            ExtractConfig(
                inputs=str(source),
                output=str(output),
                backbone=backbone,
                weights=_extraction_weights(trained),
                device=config.device,
                batch_size=config.batch_size,
                **_shaping(trained),
            ),
            on_progress=extract_progress,
        )
    if output.is_dir():
        os.utime(output)  # marks it recently used for prune_caches
    return str(output)


def prune_caches(run_dir: Path, keep: int, used: list[str]) -> None:
    """Keep the `keep` most recently used raw-input extractions (and stdin listings) of a run,
    the ones in `used` always among them, and delete the rest: repeated predicts on changing test
    sets do not pile up, while switching between a few test sets stays cheap."""
    import shutil

    root = run_dir / TEST_EMBEDDINGS_DIR
    kept = {Path(p).resolve() for p in used}
    for entries in ([p for p in root.glob("*") if p.is_dir() and p.name != LISTINGS_DIR],
                    list((root / LISTINGS_DIR).glob("stdin-*.csv"))):
        in_use = sum(p.resolve() in kept for p in entries)
        others = sorted((p for p in entries if p.resolve() not in kept), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for stale in others[max(0, keep - in_use):]:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _show(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


def check_fingerprints(run: dict, manifests: list[dict], dirs: list[str], allow_tta_mismatch: bool = False,
                       notify: Progress | None = None) -> None:
    """Refuse test embeddings made differently from the training ones, naming both values."""
    for entry, manifest, path in zip(run["embeddings"], manifests, dirs):
        want, got = fingerprint(entry["fingerprint"]), fingerprint(manifest)  # defaults fill older manifests
        unknown = unrecorded_fields(entry["fingerprint"])  # an older run recorded no precision
        if notify and any(got.get(key) is not None for key in unknown):
            notify("warning", f"{entry['path']}: the run does not record {', '.join(sorted(unknown))}; "
                              f"{path} is used with {', '.join(f'{k} {got.get(k)}' for k in sorted(unknown) if got.get(k) is not None)}")
        if want.get("tta") != got.get("tta"):
            message = (f"{path} was extracted with --tta {got.get('tta')}, the training embeddings with "
                       f"--tta {want.get('tta')}")
            if not allow_tta_mismatch:
                raise MismatchError(f"{message}; re-extract the test set with --tta {want.get('tta')}, "
                                    "or pass --allow-tta-mismatch to predict anyway")
            if notify:
                notify("warning", f"{message} (allowed by --allow-tta-mismatch)")
        diffs = [
            f"{key}: training {_show(want.get(key))}, test {_show(got.get(key))}"
            for key in FINGERPRINT_FIELDS
            if key != "tta" and key not in unknown and want.get(key) != got.get(key)
        ]
        if diffs:
            raise MismatchError(
                f"{path} was not made like the training embeddings ({entry['path']}): {'; '.join(diffs)}; "
                f"re-extract the test set with: olymp extract TEST_INPUTS -o TEST_DIR --backbone {want.get('backbone')}"
            )


def _load_transforms(run_dir: Path, run: dict) -> list[FeatureTransform | None]:
    files = (run.get("features") or {}).get("transforms")
    if not files:
        return [None] * int(run.get("folds", 0) or 0)
    return [_guarded(run_dir / name, lambda path=run_dir / name: FeatureTransform.load(path)) for name in files]


def _guarded(path: Path | str, read):
    """read(), with any failure to read a run's file turned into one line naming it (the heads'
    and numpy's own errors are many and differ by format)."""
    try:
        return read()
    except OlympError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file fails in its reader's own way
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise InputError(f"{path} cannot be read ({reason}); {REBUILD}") from None


def lightgbm_text_problem(text: str) -> str | None:
    """Why a LightGBM text model is not whole, or None. LightGBM's own parser crashes the process
    (no exception) on a file cut short, so a cut is caught here first: a whole model ends with its
    parameters and a parseable pandas_categorical line."""
    if not text.startswith("tree\n"):
        return "not a LightGBM text model"
    sizes = re.search(r"^tree_sizes=(.*)$", text, re.MULTILINE)
    if "\nend of trees\n" not in text or sizes is None or len(sizes.group(1).split()) != text.count("\nTree="):
        return "cut short in its trees"
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    if "\nend of parameters\n" not in text or not last.startswith("pandas_categorical:"):
        return "cut short after its trees"
    try:
        json.loads(last.split(":", 1)[1])
    except ValueError:
        return "cut short in its last line"
    return None


def _check_lightgbm_file(path: Path) -> None:
    """A LightGBM model file (text, or multilabel's JSON list of texts) checked before LightGBM reads it."""
    try:
        text = path.read_text()
        texts = [text] if path.suffix == ".txt" else [t for t in json.loads(text)["models"] if t is not None]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} cannot be read ({type(error).__name__}); {REBUILD}") from None
    for model_text in texts:
        problem = lightgbm_text_problem(model_text) if isinstance(model_text, str) else "not a LightGBM text model"
        if problem:
            raise InputError(f"{path} cannot be read ({problem}); {REBUILD}")


def average_folds(run_dir: Path, run: dict, X: np.ndarray) -> np.ndarray:
    """Mean of the fold (x seed) models' predictions (probabilities or values), each model fed
    the features through its fold's fitted transform (--normalize/--pca), as in training."""
    check_run_files(run_dir, run)
    try:
        head_cls = get_head(run["head"]["name"])
    except (KeyError, TypeError, OlympError):
        raise InputError(f"{run_dir / RUN_MANIFEST} names no known head; {REBUILD}") from None
    n_classes = len(run["classes"]) if run.get("classes") else 0
    transforms = _load_transforms(run_dir, run)
    model_folds = run.get("model_folds") or list(range(len(run["models"])))  # older runs: one model per fold
    features: dict[int, np.ndarray] = {}
    total = None
    for model_file, fold in zip(run["models"], model_folds):
        path = run_dir / model_file
        if fold not in features:
            transform = transforms[fold] if isinstance(fold, int) and 0 <= fold < len(transforms) else None
            features[fold] = X if transform is None else transform.transform(X)
        if head_cls.name == "lgbm":
            _check_lightgbm_file(path)
        files = model_companions(run_dir, model_file)  # mlp: the weights and their architecture JSON
        shown = path if len(files) == 1 else f"{path} or {Path(files[1]).name}"
        model = _guarded(shown, lambda path=path: head_cls.load(path, run["task"], n_classes))
        pred = _guarded(path, lambda: np.asarray(model.predict(features[fold]), dtype=np.float64))
        expected = (len(X), n_classes) if n_classes else (len(X),)
        if pred.shape != expected or not np.isfinite(pred).all():
            raise InputError(f"{path} predicts {pred.shape} values (some not finite) where {expected} were due; {REBUILD}")
        total = pred if total is None else total + pred
    return total / len(run["models"])


def _prior_rows(run: dict, n: int) -> np.ndarray:
    if isinstance(run["prior"], list):  # class frequencies or per-label rates
        return np.tile(np.asarray(run["prior"], dtype=np.float64), (n, 1))
    return np.full(n, float(run["prior"]))


@dataclass
class RunPrediction:
    ids: np.ndarray  # every id any test set knows (embedded, or recorded as failed), sorted
    pred: np.ndarray  # (N, K) or (N,): the models' mean where `usable`, the training prior elsewhere
    usable: np.ndarray  # bool (N,): predicted by the models
    notes: list[str]  # why some ids got the prior
    dirs: list[str]  # test embedding dirs used
    n_models: int


def predict_run(
    run_dir: Path, run: dict, dirs: list[str], allow_tta_mismatch: bool = False, notify: Progress | None = None
) -> RunPrediction:
    """One train-head run's fold models on test embedding dirs (one per training set, in order)."""
    sets = load_sets(dirs)
    check_fingerprints(run, [emb.manifest for emb in sets], dirs, allow_tta_mismatch, notify)

    # Every id any test set knows (embedded, or recorded as failed) gets a row.
    failed = {row["id"] for path in dirs for row in read_errors(path)}
    all_ids = np.asarray(sorted(set().union(*(emb.ids.tolist() for emb in sets), failed)), dtype=object)
    positions = [pd.Index(emb.ids).get_indexer(all_ids) for emb in sets]
    usable = np.logical_and.reduce([pos >= 0 for pos in positions])
    rows = np.flatnonzero(usable)
    X = np.hstack([emb.vectors[pos[rows]] for emb, pos in zip(sets, positions)]).astype(np.float32, copy=False)
    if X.shape[1] != run["n_features"]:
        raise MismatchError(
            f"test features have {X.shape[1]} columns, training had {run['n_features']}; "
            "pass the same embedding sets as training, in the same order"
        )
    pred = _prior_rows(run, len(all_ids))
    if len(rows):
        pred[rows] = average_folds(run_dir, run, X)

    notes = []
    n_failed = sum(i in failed for i in all_ids[~usable])
    n_missing = int((~usable).sum()) - n_failed
    if n_failed:
        notes.append(f"{n_failed} test ids failed extraction (listed in _errors.csv); they get the training prior")
    if n_missing:
        notes.append(f"{n_missing} test ids lack an embedding in some test set; they get the training prior")
    return RunPrediction(all_ids, pred, usable, notes, dirs, len(run["models"]))
