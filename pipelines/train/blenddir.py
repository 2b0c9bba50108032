"""The blend-directory format, read by predict and report as well as written by blend: its
kind, the manifest checks (`load_blend`), where a member run lives, and which kind a directory's
manifest.json records. Kept apart from blend.py so readers need not import the blending code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.core.errors import InputError
from pipelines.data.tasks import TASKS
from pipelines.train.rundir import RUN_MANIFEST


BLEND_KIND = "blend"


def _read_json(path: Path, fix: str) -> dict:
    """A JSON object from `path`, or one line naming the file and `fix`."""
    if not path.is_file():
        raise InputError(f"{path} is missing; {fix}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        if isinstance(error, json.JSONDecodeError):
            reason = f"not valid JSON ({error.msg}, line {error.lineno})"
        else:
            reason = "unreadable"
        raise InputError(f"{path} is {reason}; {fix}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} holds no JSON object; {fix}")
    return value


def manifest_kind(run_dir: str | Path) -> str | None:
    """The kind recorded in a run or blend directory's manifest.json (None when it has none)."""
    path = Path(run_dir) / RUN_MANIFEST
    if not path.is_file():
        return None
    return _read_json(path, "re-run the olymp command that wrote this directory with --overwrite").get("kind")


def load_blend(blend_dir: str | Path) -> dict:
    """A blend's manifest.json, checked to hold what predict reads from it."""
    path = Path(blend_dir) / RUN_MANIFEST
    if not path.is_file():
        raise InputError(f"{blend_dir} is not a blend (no {RUN_MANIFEST}); create one with: olymp blend RUN_DIR... -o BLEND_DIR")
    fix = f"re-run olymp blend MEMBER_RUNS... -o {blend_dir} --overwrite"
    manifest = _read_json(path, fix)
    if manifest.get("kind") != BLEND_KIND:
        raise InputError(f"{path} is not a blend manifest (kind {manifest.get('kind')!r}); pass an olymp blend -o directory")
    members = manifest.get("members")

    def valid(member) -> bool:
        weight = member.get("weight") if isinstance(member, dict) else None
        return (
            isinstance(member, dict) and isinstance(member.get("path"), str) and isinstance(member.get("absolute_path"), str)
            and isinstance(weight, (int, float)) and not isinstance(weight, bool) and np.isfinite(weight) and weight >= 0
        )

    if not isinstance(members, list) or not members or not all(valid(m) for m in members):
        raise InputError(f"{path} has no valid members list (path, absolute_path, a weight >= 0 each); {fix}")
    if not any(m["weight"] > 0 for m in members):
        raise InputError(f"{path} gives every member weight 0; {fix}")
    if manifest.get("task") not in TASKS or "prior" not in manifest:
        raise InputError(f"{path} lacks a valid task or prior; {fix}")
    return manifest


def member_dir(blend_dir: Path, member: dict) -> Path:
    """A member run: relative to the blend dir, else where it was when blended."""
    for candidate in (blend_dir / member["path"], Path(member["absolute_path"])):
        if (candidate / RUN_MANIFEST).is_file():
            return candidate
    raise InputError(
        f"blend member {member['path']} (was {member['absolute_path']}) is missing; "
        "keep the member runs next to the blend, or re-run olymp blend"
    )
