"""The run-directory format of `train-head` (see pipelines/train/train.py for what each file holds):
its file names, the in-progress marker, preparing a directory for a run (new, resumed, replaced)
and reading a finished run's manifest back with its checks. Train writes runs; report, predict,
blend and chain read them through this module, so none of them needs to import train.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pipelines.core.errors import InputError
from pipelines.core.io import check_output_dir, is_temp_name, prepare_output_dir, write_json_atomic
from pipelines.core.hashing import file_sha256
from pipelines.train.features import TRANSFORMS_DIR

# on_progress(kind, message), as train's
Progress = Callable[[str, str], None]

# reports written into a run by pipelines/train/report.py (their names are part of the format)
PER_CLASS = "per_class.csv"
CONFUSION = "confusion.png"
FOLD_SCORES = "fold_scores.png"
PRED_VS_TRUE = "pred_vs_true.png"
LABEL_AP = "label_ap.png"
REPORT_FILES = (PER_CLASS, CONFUSION, FOLD_SCORES, PRED_VS_TRUE, LABEL_AP)

RUN_MANIFEST = "manifest.json"
RUN_FORMAT = 1
MODELS_DIR = "models"
RUN_FILES = (RUN_MANIFEST, "folds.csv", "oof.csv", "scores.json")
# Written first by train-head and removed once manifest.json is written: a folder holding it is an
# olymp run that was interrupted (it resumes), and one holding neither is not a run at all.
RUN_MARKER = ".olymp-run-in-progress.json"
TEST_EMBEDDINGS_DIR = "test_embeddings"  # predict's extractions of raw test inputs, inside the run dir
DONE_SUFFIX = ".done.json"  # models/fold-K.done.json: fold K's files are whole (their SHA-256) and what made them


def _is_head_manifest(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("kind") == "head_run"
    except (OSError, ValueError, AttributeError):
        return False


def run_dir_state(run_dir: Path) -> str:
    """"new" (missing or empty), "complete" (a train-head manifest), "interrupted" (train-head's
    in-progress marker, no manifest) or "foreign" (anything else: not an olymp run)."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new"
    if _is_head_manifest(run_dir / RUN_MANIFEST):
        return "complete"
    if (run_dir / RUN_MARKER).is_file() or _only_ours(run_dir):
        return "interrupted"
    return "foreign"


_MODEL_NAME = re.compile(r"fold-\d+(-seed-\d+)?(\.txt|\.json|\.safetensors|\.done\.json)")


def _only_ours(run_dir: Path) -> bool:
    """Whether every entry is one train-head writes (a run from before the marker, or one whose
    manifest was damaged): then --overwrite may replace it."""
    allowed = {*RUN_FILES, *REPORT_FILES, MODELS_DIR, TRANSFORMS_DIR, RUN_MARKER, TEST_EMBEDDINGS_DIR}
    for entry in run_dir.iterdir():
        if entry.name not in allowed and not is_temp_name(entry.name):
            return False
    models = run_dir / MODELS_DIR
    return not models.is_dir() or all(_MODEL_NAME.fullmatch(p.name) or is_temp_name(p.name) for p in models.iterdir())


def _clear_run(run_dir: Path) -> None:
    """Remove what train-head wrote (models and transforms first, manifest last); nothing else."""
    shutil.rmtree(run_dir / MODELS_DIR, ignore_errors=True)
    shutil.rmtree(run_dir / TRANSFORMS_DIR, ignore_errors=True)
    for name in (*RUN_FILES[1:], *REPORT_FILES, RUN_MANIFEST):
        (run_dir / name).unlink(missing_ok=True)


RUN_DIR_FIX = "pass -o with a directory for the run"


def check_run_dir(run_dir: Path, overwrite: bool) -> str:
    """run_dir_state, refusing (before any work, touching nothing) a file, a complete run without
    --overwrite, and a folder that is not an olymp run with --overwrite or with files of a run's names."""
    check_output_dir(run_dir, RUN_DIR_FIX)
    state = run_dir_state(run_dir)
    if state == "complete" and not overwrite:
        raise InputError(f"{run_dir} already holds a run; pass --overwrite or choose another -o")
    if state == "foreign":
        ours = [name for name in (*RUN_FILES, MODELS_DIR, TRANSFORMS_DIR, *REPORT_FILES) if (run_dir / name).exists()]
        if overwrite or ours:
            what = f"has {', '.join(ours)} that olymp did not write" if ours else "is not an olymp run"
            raise InputError(
                f"{run_dir} {what} (no train-head manifest.json); --overwrite only replaces olymp runs: "
                "choose a new folder, e.g. -o runs/NAME"
            )
    return state


def prepare_run_dir(path: str | Path, overwrite: bool, notify: Progress | None = None) -> Path:
    """The run directory, ready for train-head: created, or an olymp run replaced (--overwrite) or
    resumed (interrupted). A folder that is not an olymp run is refused and left untouched."""
    run_dir = Path(path)
    state = check_run_dir(run_dir, overwrite)
    prepare_output_dir(run_dir, RUN_DIR_FIX)
    if not (run_dir / RUN_MARKER).is_file():  # first: a kill from here on leaves a recognisable run
        write_json_atomic(run_dir / RUN_MARKER, {"kind": "head_run_in_progress",
                                                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if state == "complete" or (state == "interrupted" and overwrite):
        _clear_run(run_dir)
    elif state == "interrupted" and notify:
        notify("warning", f"{run_dir} holds an interrupted train-head run: resuming it "
                          "(finished folds of the same data and settings are reused; --overwrite starts afresh)")
    (run_dir / MODELS_DIR).mkdir(exist_ok=True)
    return run_dir


REBUILD = "re-run olymp train-head with --overwrite to rebuild the run"


def load_run(run_dir: str | Path) -> dict:
    """A run's manifest.json, checked to be one whose files all lie inside the run dir."""
    path = Path(run_dir) / RUN_MANIFEST
    if not path.is_file():
        interrupted = (Path(run_dir) / RUN_MARKER).is_file()
        raise InputError(
            f"{run_dir} is an interrupted train-head run (no {RUN_MANIFEST}); re-run the same olymp train-head command to finish it"
            if interrupted else
            f"{run_dir} is not a train-head run (no {RUN_MANIFEST}); "
            "create one with: olymp train-head EMBEDDINGS --labels labels.csv -o RUN_DIR"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path} is not valid JSON (cut short?); {REBUILD}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "head_run":
        kind = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path} is not a train-head manifest (kind {kind!r}); pass a train-head -o directory")
    check_run_manifest(Path(run_dir), manifest)
    return manifest


def _inside(run_dir: Path, name, path: Path, field: str) -> None:
    if not isinstance(name, str) or not name:
        raise InputError(f"{path} lists {field} {name!r}, not a file name; {REBUILD}")
    root = run_dir.resolve()
    target = (root / name).resolve()
    if Path(name).is_absolute() or (target != root and root not in target.parents):
        raise InputError(f"{path} points {field} at {name}, outside the run folder {run_dir}; refused ({REBUILD})")


def check_run_manifest(run_dir: Path, manifest: dict) -> None:
    """The fields predict reads are there, and every model/transform path stays inside the run dir."""
    path = run_dir / RUN_MANIFEST
    wanted = {"task": str, "models": list, "head": dict, "n_features": int, "embeddings": list}
    for key, kind in wanted.items():
        if not isinstance(manifest.get(key), kind):
            raise InputError(f"{path} has no valid '{key}'; {REBUILD}")
    if not manifest["models"]:
        raise InputError(f"{path} lists no models; {REBUILD}")
    for name in manifest["models"]:
        _inside(run_dir, name, path, "a model")
    transforms = (manifest.get("features") or {}).get("transforms") if isinstance(manifest.get("features"), dict) else None
    for name in transforms or []:
        _inside(run_dir, name, path, "a transform")
    for name in manifest.get("files_sha256") or {}:
        _inside(run_dir, name, path, "a file")


def check_run_files(run_dir: Path, manifest: dict) -> None:
    """Refuse a model or transform file that is missing or differs from what train-head wrote
    (SHA-256 in the manifest; runs from before it are only checked for presence)."""
    for name in manifest["models"]:
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir / name} is missing; {REBUILD}")
    for name, sha in (manifest.get("files_sha256") or {}).items():
        file = run_dir / name
        if not file.is_file():
            raise InputError(f"{file} is missing; {REBUILD}")
        if file_sha256(file) != sha:
            raise InputError(f"{file} differs from what train-head wrote (changed or cut short); {REBUILD}")
