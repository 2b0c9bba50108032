"""The finetune run directory as its readers (predict, report, blend) see it: the manifest's kind,
its checks, the recorded network-file hashes, and how a run is named in tables. The fold network
folders inside it have their own format (pipelines/backbones/finetuned.py)."""

from __future__ import annotations

from pathlib import Path

from pipelines.backbones.finetuned import NETWORK_META, TASKS, is_network_dir
from pipelines.core.errors import InputError
from pipelines.core.hashing import file_sha256

FINETUNE_KIND = "finetune_run"
REBUILD_FINETUNE = "re-run the same olymp finetune command (finished folds are kept) or pass --overwrite to rebuild it"


def load_finetune_run(run_dir: str | Path) -> dict:
    """A finetune run's manifest.json, checked to hold what predict, report and blend read: task,
    classes, labels, prior, metric and one network folder per fold, all inside the run dir."""
    import json

    run_dir = Path(run_dir)
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{run_dir} is not a finished olymp finetune run (no manifest.json); {REBUILD_FINETUNE}") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise InputError(f"{path} is not valid JSON (cut short?); {REBUILD_FINETUNE}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != FINETUNE_KIND:
        kind = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path} is not a finetune manifest (kind {kind!r}); pass an olymp finetune -o directory")
    wanted = {"task": str, "classes": list, "labels": dict, "networks": list, "metric": str}
    problems = [key for key, kind in wanted.items() if not isinstance(manifest.get(key), kind)]
    if "prior" not in manifest:
        problems.append("prior")
    if problems:
        raise InputError(f"{path} lacks a valid {', '.join(problems)}; {REBUILD_FINETUNE}")
    if manifest["task"] not in TASKS:
        raise InputError(f"{path} has task {manifest['task']!r}; olymp finetune runs are {' or '.join(TASKS)}")
    if not manifest["networks"]:
        raise InputError(f"{path} lists no fold networks; {REBUILD_FINETUNE}")
    root = run_dir.resolve()
    for name in manifest["networks"]:
        target = (root / str(name)).resolve()
        if not isinstance(name, str) or Path(name).is_absolute() or root not in target.parents:
            raise InputError(f"{path} points a network at {name!r}, outside the run folder {run_dir}; refused")
        if not is_network_dir(run_dir / name):
            raise InputError(f"{run_dir / name} has no {NETWORK_META}; {REBUILD_FINETUNE}")
    recorded = manifest.get("files_sha256") or {}
    for name in recorded if isinstance(recorded, dict) else []:
        target = (root / str(name)).resolve()
        if Path(str(name)).is_absolute() or root not in target.parents:
            raise InputError(f"{path} lists file {name!r}, outside the run folder {run_dir}; refused")
    return manifest


def check_finetune_files(run_dir: str | Path, manifest: dict) -> None:
    """Refuse a network file that is missing or differs from what finetune wrote (files_sha256)."""
    for name, sha in (manifest.get("files_sha256") or {}).items():
        file = Path(run_dir) / name
        if not file.is_file():
            raise InputError(f"{file} is missing; {REBUILD_FINETUNE}")
        if file_sha256(file) != sha:
            raise InputError(f"{file} differs from what olymp finetune wrote (changed or cut short); {REBUILD_FINETUNE}")


def run_label(run: dict) -> str:
    """How a run is named in tables: its head for a train-head run, finetune:<backbone> here."""
    if run.get("kind") == FINETUNE_KIND:
        backbone = (run.get("finetune") or {}).get("backbone") if isinstance(run.get("finetune"), dict) else None
        return f"finetune:{backbone or run.get('backbone') or 'network'}"
    head = run.get("head")
    return str(head.get("name")) if isinstance(head, dict) else "?"
