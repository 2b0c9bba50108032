"""Typed settings of one `olymp extract` run (TOML table `[extract]` or CLI options)."""

from __future__ import annotations

from dataclasses import dataclass

# PIL's own decompression-bomb threshold (2 × Image.MAX_IMAGE_PIXELS): larger images are
# recorded as errors instead of eating a worker's memory.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970


@dataclass
class ExtractConfig:
    # --- what to read and where to write
    inputs: str  # a folder (recursive) or a CSV/Parquet listing with `id` and `path` columns
    output: str  # the embedding directory (a Parquet dataset), created or resumed
    # --- the model
    modality: str = "auto"  # auto (from the file extensions) | image | audio
    backbone: str | None = None  # catalog/timm/audio name; None: efficientnet_lite0 (images), PANNs Cnn14 or Lite0 on log-mel (audio)
    weights: str | None = None  # None: offline auto (package, HF cache); a path; or "random"
    layers: str | None = None  # images: timm stage indices to pool and concatenate, e.g. "-2,-1"; None: pre-logits
    # --- audio only
    window: float | None = None  # seconds per analysis window; None: the backbone's training length
    hop: float | None = None  # seconds between window starts; None: = window (no overlap)
    pool: str = "mean"  # window embeddings → clip: mean | max | meanmax
    # --- how to run it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16 | fp16 (CUDA)
    batch_size: int | str | None = None  # images per forward pass; None: 8 on CPU, 128 on GPU; "auto": largest that fits
    decode: str = "cpu"  # cpu (PIL in the workers) | gpu (JPEGs through nvJPEG; other files on the CPU)
    compile: bool = False  # torch.compile the backbone (CUDA; fixed batch shapes, padded last batch)
    tta: str = "none"  # none | hflip (images: mean of the original and the mirrored view)
    workers: int | None = None  # DataLoader decode processes; None: from the cores available
    part_size: int = 2048  # rows per Parquet part: the unit of resume (lost work on a crash ≤ this)
    # --- bad input
    max_error_rate: float = 0.5  # stop when more than this share of inputs fails (after 100)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # larger images are recorded as errors
    overwrite: bool = False  # replace an output made with another backbone/preprocessing
    limit: int | None = None  # only the first N inputs (sorted), for smoke runs
    # --- sharding (torchrun sets these from RANK/WORLD_SIZE when left None)
    num_shards: int | None = None  # split the sorted inputs into this many contiguous shards
    shard_index: int | None = None  # which shard this process extracts (0-based)
