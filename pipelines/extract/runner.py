"""Runner: wires reader → mapper → writer for one extraction, resumably.

The runner owns no model or file-format logic; it decides what is left to do, streams it
through the three stages, enforces `max_error_rate`, and keeps the manifest current.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from pipelines.embeddings import ERRORS_NAME, FORMAT_VERSION, MANIFEST_NAME, fingerprint, load_manifest
from pipelines.errors import InputError, MismatchError, TooManyErrors
from pipelines.extract.config import ExtractConfig
from pipelines.extract.inputs import extensions_for, infer_modality, list_inputs
from pipelines.extract.mapper import resolve_device
from pipelines.extract.shards import LOCK_NAME, Shard, distributed_barrier, output_lock, resolve_shard, shard_bounds
from pipelines.extract.stages import audio_stage, image_stage
from pipelines.extract.writer import PartWriter, merge_error_parts, scan_committed, write_manifest
from pipelines.hardware import available_cores
from pipelines.versions import package_versions

# The error-rate check waits for this many inputs, so three bad files in a row don't stop a run.
ERROR_RATE_MIN_INPUTS = 100


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
    resumed: int  # inputs already done before this run started
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


def run_extraction(config: ExtractConfig, on_progress: Callable[[ExtractProgress], None] | None = None) -> ExtractSummary:
    report = on_progress or (lambda event: None)
    modality = infer_modality(config.inputs, config.modality)
    items = list_inputs(config.inputs, extensions_for(modality))
    if config.limit is not None:
        items = items[: config.limit]
    shard = resolve_shard(config.num_shards, config.shard_index)
    start, stop = shard_bounds(len(items), shard.count, shard.index)
    mine = items[start:stop]  # contiguous: shard parts read back in id order
    device = shard_device(config.device, shard)
    if device.type == "cpu" and (shard.launcher == "torchrun" or "OMP_NUM_THREADS" not in os.environ):
        # torchrun pins every rank to 1 thread; other launchers can say OMP_NUM_THREADS themselves
        torch.set_num_threads(cores_per_process(shard.local_count))
    elif device.index is not None:
        torch.cuda.set_device(device)
    stage = audio_stage(config, device) if modality == "audio" else image_stage(config, device)
    output = Path(config.output)
    manifest = new_manifest(config, stage, inputs=len(items))
    manifest["compute"] = {"device": str(device), "precision": stage.precision, "decode": stage.decode,
                           "batch_size": stage.batch_size, "shards": shard.count}
    with output_lock(output) if shard.sharded else contextlib.nullcontext():
        previous = prepare_output(output, manifest, config.overwrite, keep_same_setup=shard.sharded)
        if previous:
            manifest["created"] = previous.get("created", manifest["created"])
        committed = scan_committed(output, shard.part_prefix)
        write_manifest(output, manifest)
    todo = [item for item in mine if item.id not in committed.ids]
    workers = (config.workers if config.workers is not None else default_workers(device, shard.local_count)) if todo else 0
    report(ExtractProgress("start", total=len(todo), info={
        "modality": stage.modality, "backbone": stage.backbone, "timm_name": stage.architecture,
        "weights_source": stage.weights_source, "note": stage.note, "device": str(device),
        "precision": stage.precision, "resumed": len(mine) - len(todo), "embedding_dim": stage.embedding_dim,
        "workers": workers, "batch_size": stage.batch_size, "decode": stage.decode, "tta": manifest["tta"],
        "shard": str(shard) if shard.sharded else None, "warnings": stage.warnings,
    }))

    writer = PartWriter(output, stage.embedding_dim, fingerprint(manifest), config.part_size, committed.next_part,
                        stage.extra_columns, prefix=shard.part_prefix)
    processed = errors = 0
    started = time.perf_counter()
    try:
        for ids, vectors, error_records, extra in stage.rows(todo, workers):
            writer.add(ids, vectors, error_records, extra)
            processed += len(ids) + len(error_records)
            errors += len(error_records)
            report(ExtractProgress("batch", total=len(todo), processed=processed, errors=errors))
            if processed >= ERROR_RATE_MIN_INPUTS and errors / processed > config.max_error_rate:
                raise too_many_errors(errors, processed, config.max_error_rate, output)
        if processed and errors / processed > config.max_error_rate:
            raise too_many_errors(errors, processed, config.max_error_rate, output)
    finally:
        # Ctrl-C, a stop for bad input or a crash: commit what is computed, keep the manifest true.
        writer.flush()
        seconds = time.perf_counter() - started
        final, errors_file = finish_manifest(output, manifest, items, shard)

    if shard.launcher == "torchrun":
        distributed_barrier(shard)  # every rank done: the last look sees the whole dataset
        final, errors_file = finish_manifest(output, manifest, items, shard)
    report(ExtractProgress("done", total=len(todo), processed=processed, errors=errors))
    return ExtractSummary(
        output=str(output), inputs=len(items), embedded=final.embedded, errors=final.errors,
        resumed=len(mine) - len(todo), processed=processed, seconds=seconds,
        items_per_second=processed / seconds if seconds > 0 else 0.0, backbone=stage.backbone,
        weights_source=stage.weights_source, device=str(device), embedding_dim=stage.embedding_dim,
        errors_file=str(errors_file) if errors_file else None, modality=stage.modality,
        status=manifest["status"], shard=str(shard) if shard.sharded else None, warnings=stage.warnings,
    )


def finish_manifest(output: Path, manifest: dict, items: list, shard: Shard):
    """Count what every shard committed; "complete" only when all inputs are covered.

    Under the output lock, so shards finishing together cannot write a stale status last.
    """
    with output_lock(output) if shard.sharded else contextlib.nullcontext():
        final = scan_committed(output, None)
        errors_file = merge_error_parts(output, final.error_records)
        complete = all(item.id in final.ids for item in items)
        manifest["status"] = "complete" if complete else "partial"
        manifest["counts"] = {"inputs": len(items), "embedded": final.embedded, "errors": final.errors}
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
        "preprocessing": jsonable(stage.preprocessing),
        "tta": config.tta,  # part of the fingerprint: predict refuses to mix TTA and plain embeddings
        "embedding_dim": stage.embedding_dim,
        "inputs": str(config.inputs),
        "settings": {k: v for k, v in asdict(config).items() if k not in RUN_ONLY_SETTINGS},
        "versions": package_versions("torch", "torchvision", "timm", "pillow", "pyarrow"),
        "counts": {"inputs": inputs, "embedded": 0, "errors": 0},
        "created": timestamp(),
        "updated": timestamp(),
    }


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


# Options that say where/how this one process runs, not what the embeddings are.
RUN_ONLY_SETTINGS = ("inputs", "output", "overwrite", "num_shards", "shard_index")


def prepare_output(output: Path, manifest: dict, overwrite: bool, keep_same_setup: bool = False) -> dict | None:
    """Create the output directory, or check that resuming into it is safe. Returns the old manifest.

    keep_same_setup (shards): --overwrite replaces only output from another setup, since the
    first shard to start has already replaced it for the others.
    """
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file; -o needs a directory for the Parquet dataset")
    has_manifest = (output / MANIFEST_NAME).is_file()
    if output.is_dir() and not has_manifest and any(child.name != LOCK_NAME for child in output.iterdir()):
        raise InputError(
            f"{output} exists and is not an olymp embedding directory; choose a new -o (nothing was touched)"
        )
    # Read once; not at all when a plain --overwrite replaces it anyway (it may be unreadable).
    previous = load_manifest(output) if has_manifest and (keep_same_setup or not overwrite) else None
    if has_manifest and overwrite:
        if previous is None or fingerprint(previous) != fingerprint(manifest):
            remove_dataset(output)
            previous = None
    output.mkdir(parents=True, exist_ok=True)
    if previous is None:
        return None
    old, new = fingerprint(previous), fingerprint(manifest)
    if old != new:
        changed = [key for key in new if old.get(key) != new.get(key)]
        details = "; ".join(f"{key}: {short(old.get(key))} → {short(new.get(key))}" for key in changed)
        raise MismatchError(
            f"{output} holds embeddings from another setup ({details}); "
            "use a new -o, or --overwrite to replace them"
        )
    return previous


def remove_dataset(output: Path) -> None:
    """Everything but the shards' lock file, which other processes may hold open."""
    for child in output.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
