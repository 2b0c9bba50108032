"""Typed settings of one `olymp extract` run (TOML table `[extract]` or CLI options)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.core.config import check_instance, in_range
from pipelines.core.errors import ConfigError

# PIL's own decompression-bomb threshold (2 × Image.MAX_IMAGE_PIXELS): larger images are
# recorded as errors instead of eating a worker's memory.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
POOLINGS = ("mean", "max", "meanmax")  # audio: window embeddings -> one clip vector


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

    def __post_init__(self):
        """Type and range checks, the same as the CLI's typer ranges, so a TOML `[extract]` table
        gets them too, before any model loads."""
        check_settings(self)


def _bad(key: str, value, rule: str) -> ConfigError:
    flag = "--" + key.replace("_", "-")
    return ConfigError(f"extract.{key} = {value!r} (option {flag}) is invalid: {rule}")


# Ranges of the numeric settings: key -> (lowest, highest, whether the bounds themselves are
# allowed), the same as the CLI's typer ranges. The one table: `olymp run` checks [extract] with it.
RANGES = {
    "batch_size": (1, None, True),
    "workers": (0, None, True),
    "part_size": (1, None, True),
    "max_error_rate": (0.0, 1.0, True),
    "max_image_pixels": (1, None, True),
    "limit": (1, None, True),
    "num_shards": (1, None, True),
    "shard_index": (0, None, True),
    "window": (0.0, None, False),
    "hop": (0.0, None, False),
}
RULES = {"max_error_rate": "use a share between 0 and 1, e.g. 0.5", "window": "use a positive number of seconds",
         "hop": "use a positive number of seconds"}


def check_settings(config: ExtractConfig) -> None:
    check_instance(config, "extract")  # types first: a TOML string where a number goes, ["a"] for a list
    for key, bounds in RANGES.items():
        value = getattr(config, key)
        if value is None or key == "batch_size":  # None: the default; batch_size also takes "auto"
            continue
        if not in_range(value, bounds):
            optional = ExtractConfig.__dataclass_fields__[key].default is None
            rule = RULES.get(key, f"use a whole number ≥ {bounds[0]}")
            raise _bad(key, value, rule + (", or leave it out" if optional else ""))
    batch = config.batch_size
    if batch is not None and batch != "auto":
        text = str(batch).strip()
        if isinstance(batch, bool) or not text.isdigit() or int(text) < 1:
            raise _bad("batch_size", batch, 'use a whole number ≥ 1 or "auto", e.g. --batch-size 64 or --batch-size auto')
    if config.pool not in POOLINGS:
        raise ConfigError(f"extract.pool = {config.pool!r} is not one of {', '.join(POOLINGS)}; pass --pool with one of them")
    for key in ("compile", "overwrite"):
        if not isinstance(getattr(config, key), bool):
            raise _bad(key, getattr(config, key), "use true or false")
