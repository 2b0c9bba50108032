"""Per-modality wiring of reader → mapper (→ pooler): what the runner streams rows from.

A Stage says what goes into the manifest and yields rows as
(ids, vectors, error records, extra columns) — the runner needs nothing else. `image_stage` and
`audio_stage` are the stage builders the runner picks by modality (it takes others as arguments);
each adds the seconds its reader and mapper take to the stage's `times`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import torch

from pipelines.core.errors import ConfigError
from pipelines.extract.config import ExtractConfig
from pipelines.data.inputs import InputItem
from pipelines.extract.prefetch import DevicePrefetch, loader, pipelined

Rows = Iterator[tuple[list[str], object, list[dict], dict]]


@dataclass
class StageTimes:
    """Seconds per stage of one extraction, recorded in the manifest (`timings`) and the summary.
    With prefetching (GPU) the reader runs beside the mapper: `read` is then what the mapper
    waited for its next batch, not the decode time itself."""

    read: float = 0.0  # waiting on the reader (listing, decode, resize, collate)
    forward: float = 0.0  # in the mapper: to the device, forward pass, pooling, back to the host
    write: float = 0.0  # writing Parquet parts and error records

    @contextmanager
    def timing(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)

    def timed(self, name: str, items: Iterable) -> Iterator:
        """`items`, with the time spent waiting for each one added to `name`."""
        iterator = iter(items)
        try:
            while True:
                with self.timing(name):
                    item = next(iterator, StopIteration)
                if item is StopIteration:
                    return
                yield item
        finally:  # stopped early (an error, Ctrl-C): stop the reader now (its prefetch thread, workers)
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def as_dict(self, seconds: float) -> dict:
        return {"read_s": round(self.read, 3), "forward_s": round(self.forward, 3), "write_s": round(self.write, 3),
                "seconds": round(seconds, 3)}


@dataclass
class Stage:
    modality: str  # image | audio
    backbone: str  # name recorded in the manifest
    architecture: str  # timm name or audio architecture
    weights_source: str
    weights_sha256: str | None
    preprocessing: dict  # everything that shapes the input (recorded; part of the fingerprint)
    embedding_dim: int  # width of the stored vectors
    precision: str  # resolved: fp32 | bf16 | fp16
    batch_size: int
    rows: Callable[[Sequence[InputItem], int], Rows]  # (todo, workers) -> row batches
    note: str | None = None  # why this backbone, when the user did not name one
    extra_columns: dict = field(default_factory=dict)  # name -> pyarrow type, beside id/embedding
    warnings: list[str] = field(default_factory=list)  # options that fell back (e.g. --compile without CUDA)
    decode: str = "cpu"  # where images are decoded in the end: cpu | gpu
    times: StageTimes = field(default_factory=StageTimes)  # read / forward seconds (the runner adds write)


def image_stage(config: ExtractConfig, device: torch.device) -> Stage:
    from pipelines.backbones import load_backbone
    from pipelines.extract.readers.gpu_decode import DeviceJpegDecoder, supports_gpu_decode
    from pipelines.extract.mappers.image import ImageMapper, default_batch_size, parse_batch_size
    from pipelines.extract.readers.image import ImageReader, collate, jpeg_views

    warnings = []
    requested_batch = parse_batch_size(config.batch_size)
    if config.decode not in ("cpu", "gpu"):
        raise ConfigError(f"unknown --decode {config.decode!r}; use cpu or gpu")
    backbone = load_backbone(config.backbone or "efficientnet_lite0", config.weights)
    if config.layers is not None:
        backbone = backbone.with_layers(config.layers)
    mapper = ImageMapper(backbone, device, config.precision, tta=config.tta)

    if requested_batch == "auto" and device.type == "cuda":
        batch_size = mapper.find_batch_size(backbone.data_config["input_size"])
    else:
        batch_size = requested_batch if isinstance(requested_batch, int) else default_batch_size(device)
    mapper.max_batch = batch_size
    if config.compile:
        if device.type == "cuda":
            mapper.compile()
        else:  # inductor on CPU needs a C++ toolchain and minutes of compiling: not worth it here
            warnings.append(f"--compile needs a CUDA device; running {device.type} eagerly (same embeddings)")

    decode = config.decode
    if decode == "gpu" and device.type != "cuda":
        warnings.append(f"--decode gpu needs a CUDA device (this run is on {device.type}); decoding on the CPU instead")
        decode = "cpu"
    elif decode == "gpu" and (reason := supports_gpu_decode(backbone.data_config)):
        warnings.append(f"--decode gpu: {reason} for {backbone.name}; decoding on the CPU")
        decode = "cpu"
    decoder = DeviceJpegDecoder(backbone.data_config, device, config.max_image_pixels) if decode == "gpu" else None

    def prepare(batch: dict):
        """(ids, uint8 images on the device or None, error records) of one loader batch."""
        ids, images, errors = batch["ids"], batch["images"], list(batch["errors"])
        if images is not None:
            images = images.to(device, non_blocking=True)
        if decoder is not None and "jpeg_ids" in batch:
            gpu_ids, gpu_images, gpu_errors = decoder(batch["jpeg_ids"], batch["jpeg_paths"], jpeg_views(batch))
            errors += gpu_errors
            if gpu_images is not None:
                ids = ids + gpu_ids
                images = gpu_images if images is None else torch.cat([images, gpu_images])
        return ids, images, errors

    times = StageTimes()

    def submit(prepared):
        ids, images, errors = prepared
        with times.timing("forward"):
            return ids, (mapper.submit(images) if images is not None else None), errors

    def finish(prepared, submitted):
        ids, pending, errors = submitted
        with times.timing("forward"):
            return ids, (pending.result() if pending is not None else None), errors, {}

    def rows(todo: Sequence[InputItem], workers: int) -> Rows:
        dataset = ImageReader(todo, backbone.data_config, config.max_image_pixels, jpeg_bytes=decoder is not None)
        batches = loader(dataset, workers, device, batch_size=batch_size, collate_fn=collate)
        on_device = DevicePrefetch(batches, prepare, device) if device.type == "cuda" else map(prepare, batches)
        yield from pipelined(times.timed("read", on_device), submit, finish)

    preprocessing = dict(backbone.data_config)
    if getattr(backbone, "layers", None) is not None:  # part of the fingerprint: stage features differ from pre-logits
        preprocessing["layers"] = list(backbone.layers)
    return Stage("image", backbone.name, backbone.timm_name, backbone.weights_source, backbone.weights_sha256,
                 preprocessing, backbone.embedding_dim, mapper.precision, batch_size, rows,
                 warnings=warnings, decode=decode, times=times)


# Windows per forward pass on CPU / GPU: 10 s windows are large, so fewer than images.
AUDIO_BATCH_SIZE = {"cpu": 8, "cuda": 64}


def default_audio_batch_size(device: torch.device) -> int:
    return AUDIO_BATCH_SIZE.get(device.type, 8)


def audio_stage(config: ExtractConfig, device: torch.device) -> Stage:
    from pipelines.backbones.audio import load_audio_backbone
    from pipelines.extract.mappers.audio import AudioMapper, ClipPooler
    from pipelines.extract.readers.audio import AudioReader, WindowPlan
    from pipelines.extract.mappers.image import parse_batch_size

    if config.tta != "none":
        raise ConfigError(f"--tta {config.tta} is for images; drop it for audio")
    if config.layers is not None:
        raise ConfigError(f"--layers {config.layers} is for image backbones; drop it for audio")
    backbone, note = load_audio_backbone(config.backbone, config.weights)
    window = config.window if config.window is not None else backbone.window_seconds
    hop = config.hop if config.hop is not None else window
    plan = WindowPlan.from_seconds(backbone.sample_rate, window, hop, backbone.min_seconds)
    mapper = AudioMapper(backbone, device, config.precision)
    pooler = ClipPooler(config.pool)
    requested = parse_batch_size(config.batch_size)
    # "auto" for audio: the per-device default (window batches are already large)
    batch_size = requested if isinstance(requested, int) else default_audio_batch_size(device)
    warnings = [f"--{flag} is for images; ignored for audio" for flag, on in
                (("compile", config.compile), ("decode gpu", config.decode == "gpu")) if on]
    preprocessing = {**backbone.frontend, "sample_rate": backbone.sample_rate, "window_seconds": window,
                     "hop_seconds": hop, "pool": config.pool, "min_seconds": backbone.min_seconds}

    times = StageTimes()

    def rows(todo: Sequence[InputItem], workers: int) -> Rows:
        dataset = AudioReader(todo, plan, batch_size)
        for batch in times.timed("read", loader(dataset, workers, device, batch_size=None)):
            ids, vectors, counts = [], None, []
            if batch["waveforms"] is not None:
                with times.timing("forward"):
                    embedded = mapper(batch["waveforms"], batch["source_rates"])
                ids, vectors, counts = pooler.add(batch["ids"], embedded, batch["last"])
            pooler.discard(error["id"] for error in batch["errors"])
            yield ids, vectors, batch["errors"], {"n_windows": counts}

    return Stage("audio", backbone.name, backbone.architecture, backbone.weights_source, backbone.weights_sha256,
                 preprocessing, pooler.output_dim(backbone.embedding_dim), mapper.precision, batch_size, rows,
                 note=note, extra_columns={"n_windows": pa.int32()}, warnings=warnings, times=times)
