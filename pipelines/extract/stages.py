"""Per-modality wiring of reader → mapper (→ pooler): what the runner streams rows from.

A Stage says what goes into the manifest and yields rows as
(ids, vectors, error records, extra columns) — the runner needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import pyarrow as pa
import torch

from pipelines.extract.config import ExtractConfig
from pipelines.extract.inputs import InputItem

Rows = Iterator[tuple[list[str], object, list[dict], dict]]


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


def loader(dataset, workers: int, device: torch.device, **options) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, **options,
    )


def image_stage(config: ExtractConfig, device: torch.device) -> Stage:
    from pipelines.backbones import load_backbone
    from pipelines.extract.mapper import ImageMapper, default_batch_size
    from pipelines.extract.reader import ImageReader, collate

    backbone = load_backbone(config.backbone or "efficientnet_lite0", config.weights)
    mapper = ImageMapper(backbone, device, config.precision)
    batch_size = config.batch_size or default_batch_size(device)

    def rows(todo: Sequence[InputItem], workers: int) -> Rows:
        dataset = ImageReader(todo, backbone.data_config, config.max_image_pixels)
        for batch in loader(dataset, workers, device, batch_size=batch_size, collate_fn=collate):
            vectors = mapper(batch["images"]) if batch["images"] is not None else None
            yield batch["ids"], vectors, batch["errors"], {}

    return Stage("image", backbone.name, backbone.timm_name, backbone.weights_source, backbone.weights_sha256,
                 dict(backbone.data_config), backbone.embedding_dim, mapper.precision, batch_size, rows)


# Windows per forward pass on CPU / GPU: 10 s windows are large, so fewer than images.
AUDIO_BATCH_SIZE = {"cpu": 8, "cuda": 64}


def audio_stage(config: ExtractConfig, device: torch.device) -> Stage:
    from pipelines.backbones.audio import load_audio_backbone
    from pipelines.extract.audio_mapper import AudioMapper, ClipPooler
    from pipelines.extract.audio_reader import AudioReader, WindowPlan

    backbone, note = load_audio_backbone(config.backbone, config.weights)
    window = config.window if config.window is not None else backbone.window_seconds
    hop = config.hop if config.hop is not None else window
    plan = WindowPlan.from_seconds(backbone.sample_rate, window, hop, backbone.min_seconds)
    mapper = AudioMapper(backbone, device, config.precision)
    pooler = ClipPooler(config.pool)
    batch_size = config.batch_size or AUDIO_BATCH_SIZE.get(device.type, 8)
    preprocessing = {**backbone.frontend, "sample_rate": backbone.sample_rate, "window_seconds": window,
                     "hop_seconds": hop, "pool": config.pool, "min_seconds": backbone.min_seconds}

    def rows(todo: Sequence[InputItem], workers: int) -> Rows:
        dataset = AudioReader(todo, plan, batch_size)
        for batch in loader(dataset, workers, device, batch_size=None):
            ids, vectors, counts = [], None, []
            if batch["waveforms"] is not None:
                ids, vectors, counts = pooler.add(batch["ids"], mapper(batch["waveforms"]), batch["last"])
            pooler.discard(error["id"] for error in batch["errors"])
            yield ids, vectors, batch["errors"], {"n_windows": counts}

    return Stage("audio", backbone.name, backbone.architecture, backbone.weights_source, backbone.weights_sha256,
                 preprocessing, pooler.output_dim(backbone.embedding_dim), mapper.precision, batch_size, rows,
                 note=note, extra_columns={"n_windows": pa.int32()})
