"""Runner: wires reader → mapper → writer for one extraction, resumably.

The runner owns no model or file-format logic; it decides what is left to do, streams it
through the three stages, enforces `max_error_rate`, and keeps the manifest current.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from pipelines.embeddings import ERRORS_NAME, FORMAT_VERSION, MANIFEST_NAME, fingerprint, load_manifest
from pipelines.errors import InputError, MismatchError, TooManyErrors
from pipelines.extract.config import ExtractConfig
from pipelines.extract.inputs import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, infer_modality, list_inputs
from pipelines.extract.mapper import resolve_device
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


def default_workers(device: torch.device) -> int:
    """Decode processes: leave the model most cores on CPU; on a GPU, decode with all of them."""
    cores = available_cores()
    return min(16, cores) if device.type == "cuda" else max(1, cores // 2)


def run_extraction(config: ExtractConfig, on_progress: Callable[[ExtractProgress], None] | None = None) -> ExtractSummary:
    report = on_progress or (lambda event: None)
    modality = infer_modality(config.inputs, config.modality)
    items = list_inputs(config.inputs, AUDIO_EXTENSIONS if modality == "audio" else IMAGE_EXTENSIONS)
    if config.limit is not None:
        items = items[: config.limit]
    device = resolve_device(config.device)
    stage = audio_stage(config, device) if modality == "audio" else image_stage(config, device)
    output = Path(config.output)
    manifest = new_manifest(config, stage, inputs=len(items))
    manifest["compute"] = {"device": str(device), "precision": stage.precision}
    previous = prepare_output(output, manifest, config.overwrite)
    if previous:
        manifest["created"] = previous.get("created", manifest["created"])

    committed = scan_committed(output)
    todo = [item for item in items if item.id not in committed.ids]
    workers = (config.workers if config.workers is not None else default_workers(device)) if todo else 0
    write_manifest(output, manifest)
    report(ExtractProgress("start", total=len(todo), info={
        "modality": stage.modality, "backbone": stage.backbone, "timm_name": stage.architecture,
        "weights_source": stage.weights_source, "note": stage.note, "device": str(device),
        "precision": stage.precision, "resumed": len(items) - len(todo), "embedding_dim": stage.embedding_dim,
        "workers": workers, "batch_size": stage.batch_size,
    }))

    writer = PartWriter(output, stage.embedding_dim, fingerprint(manifest), config.part_size, committed.next_part,
                        stage.extra_columns)
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
        final = scan_committed(output)
        errors_file = merge_error_parts(output)
        complete = final.embedded + final.errors >= len(items)
        manifest["status"] = "complete" if complete else "partial"
        manifest["counts"] = {"inputs": len(items), "embedded": final.embedded, "errors": final.errors}
        manifest["updated"] = timestamp()
        write_manifest(output, manifest)

    report(ExtractProgress("done", total=len(todo), processed=processed, errors=errors))
    return ExtractSummary(
        output=str(output), inputs=len(items), embedded=final.embedded, errors=final.errors,
        resumed=len(items) - len(todo), processed=processed, seconds=seconds,
        items_per_second=processed / seconds if seconds > 0 else 0.0, backbone=stage.backbone,
        weights_source=stage.weights_source, device=str(device), embedding_dim=stage.embedding_dim,
        errors_file=str(errors_file) if errors_file else None, modality=stage.modality,
    )


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
        "embedding_dim": stage.embedding_dim,
        "inputs": str(config.inputs),
        "settings": {k: v for k, v in asdict(config).items() if k not in ("inputs", "output", "overwrite")},
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


def prepare_output(output: Path, manifest: dict, overwrite: bool) -> dict | None:
    """Create the output directory, or check that resuming into it is safe. Returns the old manifest."""
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file; -o needs a directory for the Parquet dataset")
    has_manifest = (output / MANIFEST_NAME).is_file()
    if output.is_dir() and not has_manifest and any(output.iterdir()):
        raise InputError(
            f"{output} exists and is not an olymp embedding directory; choose a new -o (nothing was touched)"
        )
    if has_manifest and overwrite:
        shutil.rmtree(output)
        has_manifest = False
    output.mkdir(parents=True, exist_ok=True)
    if not has_manifest:
        return None
    previous = load_manifest(output)
    old, new = fingerprint(previous), fingerprint(manifest)
    if old != new:
        changed = [key for key in new if old.get(key) != new.get(key)]
        details = "; ".join(f"{key}: {short(old.get(key))} → {short(new.get(key))}" for key in changed)
        raise MismatchError(
            f"{output} holds embeddings from another setup ({details}); "
            "use a new -o, or --overwrite to replace them"
        )
    return previous


def short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
