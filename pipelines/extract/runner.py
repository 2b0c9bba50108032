"""Runner: wires reader → mapper → writer for one extraction, resumably.

The runner owns no model or file-format logic; it decides what is left to do, streams it
through the three stages, enforces `max_error_rate`, and keeps the manifest current.

What is left to do is decided by content, not by id alone. Every input is fingerprinted
(pipelines.core.hashing.file_fingerprint: size, mtime_ns and a BLAKE2b of its first and last 64 KiB)
and every committed record stores the fingerprint it was made from. On resume an input is
re-embedded when its fingerprint changed (or its record predates fingerprints), and an input
recorded as an error is tried once more (`attempts` in its record; after MAX_ATTEMPTS runs the
record stands). Superseded records are removed before anything is re-embedded: the parts holding
them are rewritten without them, each atomically (pipelines.extract.writer.drop_records), so a
reader sees every id exactly once with its newest vector, even after a kill at any point. The
same step drops records of ids the inputs no longer list, and repairs folders holding an id
twice (from older olymp versions): the newest record is kept.

One writer per output folder: `_extract.lock` (pipelines.extract.shards.writer_lock) is held for
the whole run; the shards of one sharded run share it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import torch

from pipelines.data.embeddings import (ERROR_PARTS_DIR, ERRORS_NAME, FORMAT_VERSION, MANIFEST_NAME, METADATA_KEY,
                                  PART_GLOB, fingerprint, load_manifest)
from pipelines.core.errors import InputError, MismatchError, TooManyErrors
from pipelines.extract.config import ExtractConfig
from pipelines.data.inputs import extensions_for, infer_modality, list_inputs
from pipelines.core.device import resolve_device
from pipelines.extract.shards import (LOCK_NAME, WRITER_LOCK_NAME, Shard, distributed_barrier, output_lock,
                                      resolve_shard, shard_bounds, writer_lock)
from pipelines.extract.stages import Stage, audio_stage, image_stage
from pipelines.extract.writer import (CommittedState, PartWriter, drop_records, merge_error_parts, scan_committed,
                                      write_manifest)
from pipelines.core.io import check_output_dir, is_temp_name, json_ready, prepare_output_dir
from pipelines.core.hardware import available_cores, keep_freed_memory
from pipelines.core.hashing import file_fingerprint
from pipelines.core.versions import package_versions

# The error-rate check waits for this many inputs, so three bad files in a row don't stop a run.
ERROR_RATE_MIN_INPUTS = 100
# Runs that try an input before its error record stands: a failure is retried once on resume.
MAX_ATTEMPTS = 2


@dataclass
class ExtractProgress:
    """What the runner reports to its caller (the CLI draws it; a notebook may print it)."""

    stage: str  # "start" | "batch" | "done"
    total: int  # inputs this run has to process (already-done ones excluded)
    processed: int = 0  # inputs handled so far in this run (embedded + errors)
    errors: int = 0  # errors so far in this run
    info: dict | None = None  # on "start": backbone, weights source, device, resumed count


@dataclass
class ExtractSummary:
    output: str
    inputs: int  # inputs listed
    embedded: int  # rows in the dataset now (this run and earlier ones)
    errors: int  # inputs recorded as errors (this run and earlier ones)
    resumed: int  # inputs already done before this run started (unchanged since)
    processed: int  # inputs handled by this run
    seconds: float
    items_per_second: float
    backbone: str
    weights_source: str
    device: str
    embedding_dim: int
    errors_file: str | None
    modality: str = "image"
    status: str = "complete"  # complete | partial (other shards still running, or stopped early)
    shard: str | None = None  # "shard 2/4" when this process extracted one shard
    warnings: list[str] | None = None  # options that fell back (e.g. --decode gpu without CUDA)
    changed: int = 0  # inputs re-embedded because their file changed since they were committed
    retried: int = 0  # inputs recorded as errors before, tried once more by this run
    timings: dict | None = None  # this run's seconds per stage: read_s, forward_s, write_s, seconds


# The stage builder per modality: (config, device) -> Stage (reader and mapper wired together).
STAGE_BUILDERS: dict[str, Callable[[ExtractConfig, torch.device], Stage]] = {"image": image_stage, "audio": audio_stage}


def cores_per_process(local_processes: int = 1) -> int:
    """Cores each of the extraction processes on this machine may use (N ranks split the box)."""
    return max(1, available_cores() // max(1, local_processes))


def default_workers(device: torch.device, local_processes: int = 1) -> int:
    """Decode processes: leave the model most cores on CPU; on a GPU, decode with all of them."""
    cores = cores_per_process(local_processes)
    return min(16, cores) if device.type == "cuda" else max(1, cores // 2)


def shard_device(requested: str, shard: Shard) -> torch.device:
    """Under torchrun each rank takes its own GPU, cuda:LOCAL_RANK (auto or plain cuda asked for)."""
    device = resolve_device(requested)
    if device.type == "cuda" and device.index is None and shard.launcher == "torchrun":
        return torch.device("cuda", shard.local_rank % torch.cuda.device_count())
    return device


def run_extraction(
    config: ExtractConfig,
    on_progress: Callable[[ExtractProgress], None] | None = None,
    build_stage: Callable[[ExtractConfig, torch.device], Stage] | None = None,
    build_writer: Callable[..., PartWriter] = PartWriter,
) -> ExtractSummary:
    """Extract `config.inputs` into `config.output`: the stage (reader → mapper, from
    `build_stage`, by default STAGE_BUILDERS[modality]) streams rows, the writer (`build_writer`,
    PartWriter's arguments) commits them; the seconds of each go into the manifest's `timings`."""
    keep_freed_memory()  # large activation blocks reused, not unmapped and faulted in again (core/hardware)
    report = on_progress or (lambda event: None)
    modality = infer_modality(config.inputs, config.modality)
    listed = list_inputs(config.inputs, extensions_for(modality), with_unreachable=True)
    items = listed[: config.limit] if config.limit is not None else listed
    shard = resolve_shard(config.num_shards, config.shard_index)
    start, stop = shard_bounds(len(items), shard.count, shard.index)
    mine = items[start:stop]  # contiguous: shard parts read back in id order
    output = Path(config.output)
    refuse_foreign(output)  # before the lock file is created in it
    with writer_lock(output, shard):
        return _run_locked(config, report, modality, output, listed, items, mine, shard,
                           build_stage or STAGE_BUILDERS[modality], build_writer)


def _run_locked(config: ExtractConfig, report, modality: str, output: Path, listed: list, items: list, mine: list,
                shard: Shard, build_stage, build_writer) -> ExtractSummary:
    device = shard_device(config.device, shard)
    if device.type == "cpu" and (shard.launcher == "torchrun" or "OMP_NUM_THREADS" not in os.environ):
        # torchrun pins every rank to 1 thread; other launchers can say OMP_NUM_THREADS themselves
        torch.set_num_threads(cores_per_process(shard.local_count))
    elif device.index is not None:
        torch.cuda.set_device(device)
    stage = build_stage(config, device)
    manifest = new_manifest(config, stage, inputs=len(items))
    manifest["compute"] = {"device": str(device), "precision": stage.precision, "decode": stage.decode,
                           "batch_size": stage.batch_size, "shards": shard.count}
    prints, unreachable = fingerprint_inputs(mine)
    with output_lock(output) if shard.sharded else contextlib.nullcontext():
        previous = prepare_output(output, manifest, config.overwrite, keep_same_setup=shard.sharded)
        if previous:
            manifest["created"] = previous.get("created", manifest["created"])
        committed = scan_committed(output, shard.part_prefix)
        plan = plan_resume(committed, mine, listed, prints)
        drop_records(output, plan.drops)
        write_manifest(output, manifest)
    todo = [item for item in mine if item.id not in plan.done]
    decodable = [item for item in todo if item.id not in unreachable]
    workers = (config.workers if config.workers is not None else default_workers(device, shard.local_count)) if decodable else 0
    report(ExtractProgress("start", total=len(todo), info={
        "modality": stage.modality, "backbone": stage.backbone, "timm_name": stage.architecture,
        "weights_source": stage.weights_source, "note": stage.note, "device": str(device),
        "precision": stage.precision, "resumed": len(mine) - len(todo), "embedding_dim": stage.embedding_dim,
        "workers": workers, "batch_size": stage.batch_size, "decode": stage.decode, "tta": manifest["tta"],
        "shard": str(shard) if shard.sharded else None, "warnings": stage.warnings,
        "changed": plan.changed, "retried": plan.retried,
    }))

    writer = build_writer(output, stage.embedding_dim, fingerprint(manifest), config.part_size, committed.next_part,
                        stage.extra_columns, prefix=shard.part_prefix, fingerprints=prints, attempts=plan.attempts)
    paths = {item.id: item.path for item in todo}
    processed = errors = 0
    resumed = len(mine) - len(todo)  # already embedded by an earlier run
    started = time.perf_counter()

    def batches():
        failed = [{"id": item.id, "path": item.path, "error": unreachable[item.id]}
                  for item in todo if item.id in unreachable]
        if failed:  # recorded without decoding: no file to read
            yield [], None, failed, {}
        if decodable:
            yield from stage.rows(decodable, workers)

    try:
        for ids, vectors, error_records, extra in batches():
            ids, vectors, extra, non_finite = split_non_finite(ids, vectors, extra, paths, stage.precision)
            error_records = list(error_records) + non_finite
            with stage.times.timing("write"):
                writer.add(ids, vectors, error_records, extra)
            processed += len(ids) + len(error_records)
            errors += len(error_records)
            report(ExtractProgress("batch", total=len(todo), processed=processed, errors=errors))
            # inputs embedded by an earlier run count too: a resume that retries a few failed files
            # alone must not read as a 100% failure rate
            seen = processed + resumed
            if processed >= ERROR_RATE_MIN_INPUTS and errors / seen > config.max_error_rate:
                raise too_many_errors(errors, seen, config.max_error_rate, output)
        if processed and errors / (processed + resumed) > config.max_error_rate:
            raise too_many_errors(errors, processed + resumed, config.max_error_rate, output)
    finally:
        # Ctrl-C, a stop for bad input or a crash: commit what is computed, keep the manifest true.
        with stage.times.timing("write"):
            writer.flush()
        seconds = time.perf_counter() - started
        manifest["timings"] = stage.times.as_dict(seconds)
        final, errors_file = finish_manifest(output, manifest, items, shard)

    if shard.launcher == "torchrun":
        distributed_barrier(shard)  # every rank done: the last look sees the whole dataset
        final, errors_file = finish_manifest(output, manifest, items, shard)
    report(ExtractProgress("done", total=len(todo), processed=processed, errors=errors))
    embedded, failed = final.counted({item.id for item in items})
    return ExtractSummary(
        output=str(output), inputs=len(items), embedded=embedded, errors=failed,
        resumed=len(mine) - len(todo), processed=processed, seconds=seconds,
        items_per_second=processed / seconds if seconds > 0 else 0.0, backbone=stage.backbone,
        weights_source=stage.weights_source, device=str(device), embedding_dim=stage.embedding_dim,
        errors_file=str(errors_file) if errors_file else None, modality=stage.modality,
        status=manifest["status"], shard=str(shard) if shard.sharded else None, warnings=stage.warnings,
        changed=plan.changed, retried=plan.retried, timings=manifest["timings"],
    )


def describe_unreadable(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return f"permission denied; make it readable (chmod u+r '{error.filename}') and re-run"
    if error.errno == errno.ELOOP:
        return "symlink loop; point the link at a real file or remove it"
    if isinstance(error, IsADirectoryError):
        return "a folder, not a file"
    return f"cannot read the file ({error.strerror or error})"


def fingerprint_inputs(items: list) -> tuple[dict, dict]:
    """(id -> file_fingerprint, id -> why it cannot be read). Unreachable inputs get "" as their
    fingerprint: their error record stands until the path changes. Hashing runs in threads (I/O)."""
    def one(item):
        if item.error is not None:
            return item.id, "", item.error
        try:
            return item.id, file_fingerprint(item.path), None
        except OSError as error:
            return item.id, "", describe_unreadable(error)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, items))
    return {i: p for i, p, _ in results}, {i: e for i, _, e in results if e is not None}


@dataclass
class ResumePlan:
    done: set  # ids whose committed record stands
    drops: dict  # part stem -> ids whose records there are superseded
    attempts: dict  # id -> earlier failed attempts (inputs retried by this run)
    changed: int = 0  # re-embedded: their file changed
    retried: int = 0  # re-tried: recorded as errors before


def plan_resume(committed: CommittedState, mine: list, listed: list, prints: dict) -> ResumePlan:
    """Which committed records stand, and which are superseded (see the module docstring).

    Only this process's inputs (`mine`) are judged by fingerprint and retried; ids listed for other
    shards keep their newest record; ids the inputs no longer list are dropped.
    """
    own = {item.id for item in mine}
    every = {item.id for item in listed}
    plan = ResumePlan(set(), {}, {})
    for item_id, records in committed.records.items():
        keep = committed.newest(item_id)
        if item_id in own:
            if keep.fingerprint != prints[item_id]:
                keep = None
                plan.changed += 1
            elif keep.kind == "error" and keep.attempts < MAX_ATTEMPTS:
                plan.attempts[item_id] = keep.attempts
                keep = None
                plan.retried += 1
        elif item_id not in every:
            keep = None
        for record in records:
            if record is not keep:
                plan.drops.setdefault(record.part, set()).add(item_id)
        if keep is not None and item_id not in plan.drops.get(keep.part, ()):
            plan.done.add(item_id)
    return plan


def split_non_finite(ids: list, vectors, extra: dict, paths: dict, precision: str):
    """Rows whose embedding holds NaN/inf become error records: never stored as vectors."""
    if not ids:
        return ids, vectors, extra, []
    array = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
    finite = np.isfinite(array).all(axis=1)
    if finite.all():
        return ids, array, extra, []
    hint = "; re-run with --precision fp32" if precision != "fp32" else ""
    bad = [{"id": i, "path": paths.get(i, ""), "error": f"non-finite embedding (NaN/inf from the backbone){hint}"}
           for i, ok in zip(ids, finite) if not ok]
    keep = np.flatnonzero(finite)
    return ([ids[k] for k in keep], array[keep], {name: [values[k] for k in keep] for name, values in extra.items()},
            bad)


def finish_manifest(output: Path, manifest: dict, items: list, shard: Shard):
    """Count what every shard committed; "complete" only when all inputs are covered.

    Under the output lock, so shards finishing together cannot write a stale status last.
    """
    with output_lock(output) if shard.sharded else contextlib.nullcontext():
        final = scan_committed(output, None)
        listed = {item.id for item in items}
        errors_file = merge_error_parts(output, [r for r in final.error_records if r["id"] in listed])
        complete = listed <= final.ids
        embedded, errors = final.counted(listed)
        manifest["status"] = "complete" if complete else "partial"
        manifest["counts"] = {"inputs": len(items), "embedded": embedded, "errors": errors}
        manifest["updated"] = timestamp()
        write_manifest(output, manifest)
    return final, errors_file


def too_many_errors(errors: int, processed: int, limit: float, output: Path) -> TooManyErrors:
    return TooManyErrors(
        f"stopped: {errors} of {processed} inputs failed ({errors / processed:.0%} > --max-error-rate "
        f"{limit:g}); see {output / ERRORS_NAME}, fix the inputs or raise --max-error-rate"
    )


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_manifest(config: ExtractConfig, stage, inputs: int) -> dict:
    return {
        "olymp_format": FORMAT_VERSION,
        "kind": "embeddings",
        "status": "running",
        "modality": stage.modality,
        "backbone": stage.backbone,
        "timm_name": stage.architecture,
        "backbone_note": stage.note,
        "weights_source": stage.weights_source,
        "weights_sha256": stage.weights_sha256,
        "weights": config.weights,
        "preprocessing": json_ready(stage.preprocessing),
        "tta": config.tta,  # part of the fingerprint: predict refuses to mix TTA and plain embeddings
        "precision": stage.precision,  # part of the fingerprint: resume never mixes fp16/bf16/fp32 rows
        "embedding_dim": stage.embedding_dim,
        "inputs": str(config.inputs),
        "settings": {k: v for k, v in asdict(config).items() if k not in RUN_ONLY_SETTINGS},
        "versions": package_versions("torch", "torchvision", "timm", "pillow", "pyarrow"),
        "counts": {"inputs": inputs, "embedded": 0, "errors": 0},
        "created": timestamp(),
        "updated": timestamp(),
    }


# Options that say where/how this one process runs, not what the embeddings are.
RUN_ONLY_SETTINGS = ("inputs", "output", "overwrite", "num_shards", "shard_index")


def is_own_name(name: str) -> bool:
    """A name olymp's extract writes into an output folder (temp files of its atomic writes included)."""
    return (name in (MANIFEST_NAME, ERRORS_NAME, ERROR_PARTS_DIR, LOCK_NAME, WRITER_LOCK_NAME)
            or is_temp_name(name) or fnmatch.fnmatch(name, PART_GLOB))


OUTPUT_FIX = "-o needs a directory for the Parquet dataset"


def refuse_foreign(output: Path) -> None:
    """Refuse, touching nothing, an -o that is a file or a folder holding anything but olymp's own
    files. A folder with only olymp's temp files, parts or lock (a run killed before its first
    manifest was renamed into place) is olymp's: resumable, or replaceable with --overwrite."""
    check_output_dir(output, OUTPUT_FIX)
    if output.is_dir() and not (output / MANIFEST_NAME).is_file():
        foreign = sorted(child.name for child in output.iterdir() if not is_own_name(child.name))
        if foreign:
            raise InputError(
                f"{output} exists and is not an olymp embedding directory (it holds {short(', '.join(foreign))}); "
                "choose a new -o (nothing was touched)"
            )


def recorded_fingerprint(output: Path, manifest: dict | None) -> dict | None:
    """How the folder's embeddings were made: from its manifest, else from its parts' metadata."""
    if manifest is not None:
        return fingerprint(manifest)
    for part in sorted(output.glob(PART_GLOB)):
        try:
            metadata = pq.read_schema(part).metadata or {}
            return fingerprint(json.loads(metadata[METADATA_KEY]))
        except (OSError, ValueError, KeyError):
            continue
    return None


def prepare_output(output: Path, manifest: dict, overwrite: bool, keep_same_setup: bool = False) -> dict | None:
    """Create the output directory, or check that resuming into it is safe. Returns the old manifest.

    keep_same_setup (shards): --overwrite replaces only output from another setup, since the
    first shard to start has already replaced it for the others.
    """
    refuse_foreign(output)
    has_manifest = (output / MANIFEST_NAME).is_file()
    previous = None
    # Read once; not at all when a plain --overwrite replaces it anyway (it may be unreadable).
    if has_manifest and (keep_same_setup or not overwrite):
        try:
            previous = load_manifest(output)
        except ValueError:
            if not overwrite:
                raise InputError(f"{output / MANIFEST_NAME} is not valid JSON; "
                                 "re-run with --overwrite to replace the folder, or use a new -o") from None
    new = fingerprint(manifest)
    if overwrite:
        if not (keep_same_setup and previous is not None and fingerprint(previous) == new):
            remove_dataset(output)
            previous = None
        prepare_output_dir(output, OUTPUT_FIX)
        return previous
    prepare_output_dir(output, OUTPUT_FIX)
    old = recorded_fingerprint(output, previous)
    if old is not None and old != new:
        changed = [key for key in new if old.get(key) != new.get(key)]
        details = "; ".join(f"{key}: {short(old.get(key))} → {short(new.get(key))}" for key in changed)
        raise MismatchError(
            f"{output} holds embeddings from another setup ({details}); "
            "use a new -o, or --overwrite to replace them"
        )
    return previous


def remove_dataset(output: Path) -> None:
    """olymp's files, parts first and the manifest last: a kill mid-way leaves a folder that is still
    recognisably olymp's. The lock files stay (other processes may hold them open); names olymp
    does not write are left alone."""
    if not output.is_dir():
        return
    for part in sorted(output.glob(PART_GLOB)):
        part.unlink()
    shutil.rmtree(output / ERROR_PARTS_DIR, ignore_errors=True)
    for child in output.iterdir():
        if child.name in (MANIFEST_NAME, LOCK_NAME, WRITER_LOCK_NAME) or not is_own_name(child.name):
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    (output / MANIFEST_NAME).unlink(missing_ok=True)


def short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
