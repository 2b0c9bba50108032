"""Reader stage: decode files into uint8 tensors in DataLoader workers, recording what fails.

A sample is a plain dict: {"id", "path", "image": uint8 CHW tensor or None, "error": str or None}.
`collate` splits a batch into the decodable part (stacked) and the error records, so one
corrupt file never costs the rest of its batch.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pipelines.data.inputs import InputItem

# A truncated JPEG/PNG is an error to record, not a half-grey image to embed silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def make_image_transform(data_config: dict) -> Callable:
    """Resize + crop exactly as the model's pretrained config says, ending in a uint8 tensor.

    Normalization (mean/std) is left to the mapper, which does it on the device.
    """
    from timm.data import create_transform

    return create_transform(**data_config, is_training=False, normalize=False)


def decode_size(data_config: dict) -> int:
    """Shorter side the eval transform resizes to: JPEGs need not be decoded any larger."""
    crop_pct = data_config.get("crop_pct") or 1.0
    return int(np.ceil(max(data_config["input_size"][1:]) / crop_pct))


def load_rgb(path: str, max_pixels: int, min_side: int = 0) -> Image.Image:
    """Open any still image PIL reads as 8-bit RGB; raise ValueError with a readable reason."""
    with Image.open(path) as opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise ValueError(
                f"image too large ({width}x{height} = {width * height:,} pixels > {max_pixels:,}); "
                "raise max_image_pixels in the extract config or downscale it"
            )
        if opened.format == "JPEG" and min_side and min(width, height) >= 2 * min_side:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below min_side: a 12 MP photo
            # bound for 224 px then costs a fraction of the time and memory.
            opened.draft("RGB", (min_side, min_side))
        opened.load()
        image = ImageOps.exif_transpose(opened)
    return to_rgb8(image)


def to_rgb8(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: convert("RGB") would clip everything above 255 to white,
        # so rescale the real value range to 0..255 first.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels carry arbitrary colours; composite on white as viewers show them.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def jpeg_for_device(path: str, max_pixels: int) -> torch.Tensor | None:
    """The file's bytes when nvJPEG can take it as is (baseline/progressive RGB or grey JPEG,
    upright, not too large), else None: the CPU path decodes it (and records what fails)."""
    with Image.open(path) as opened:  # reads the header only
        width, height = opened.size
        if opened.format != "JPEG" or opened.mode not in ("RGB", "L") or width * height > max_pixels:
            return None
        if opened.getexif().get(0x0112, 1) != 1:  # EXIF-rotated: PIL applies the rotation
            return None
    with open(path, "rb") as f:
        data = f.read()
    if not data.endswith(b"\xff\xd9"):  # no end-of-image marker: truncated (or trailing bytes): PIL decides
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


class ImageReader(torch.utils.data.Dataset):
    """Map-style dataset over InputItems; decoding runs in the DataLoader's worker processes.

    With `jpeg_bytes=True` (--decode gpu) a JPEG that nvJPEG can take is passed on undecoded
    (sample["jpeg"]); everything else is decoded here as usual.
    """

    def __init__(self, items: Sequence[InputItem], data_config: dict, max_pixels: int, jpeg_bytes: bool = False):
        self.items = items
        self.transform = make_image_transform(data_config)
        self.min_side = decode_size(data_config)
        self.max_pixels = max_pixels
        self.jpeg_bytes = jpeg_bytes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if self.jpeg_bytes:
            try:
                data = jpeg_for_device(item.path, self.max_pixels)
            except Exception:
                data = None  # the CPU decode below records the reason
            if data is not None:
                return {"id": item.id, "path": item.path, "image": None, "jpeg": data, "error": None}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EXIF/ICC chatter would flood a long run's log
                image = self.transform(load_rgb(item.path, self.max_pixels, self.min_side))
            return {"id": item.id, "path": item.path, "image": image, "error": None}
        except Exception as error:  # any decode failure becomes a record, never a crash
            return {"id": item.id, "path": item.path, "image": None, "error": describe(error)}


def describe(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not a readable image (unknown or corrupt format)"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, OSError) and "truncated" in str(error).lower():
        return f"truncated image ({error})"
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large ({error})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def collate(samples: list[dict]) -> dict:
    good = [s for s in samples if s["error"] is None and s["image"] is not None]
    jpegs = [s for s in samples if s.get("jpeg") is not None]
    batch = {
        "ids": [s["id"] for s in good],
        "images": torch.stack([s["image"] for s in good]) if good else None,
        "errors": [{"id": s["id"], "path": s["path"], "error": s["error"]} for s in samples if s["error"]],
    }
    if jpegs:  # --decode gpu: undecoded files, decoded on the device by the stage
        batch["jpeg_ids"] = [s["id"] for s in jpegs]
        batch["jpeg_paths"] = [s["path"] for s in jpegs]
        # One buffer, not one tensor per file: each tensor leaving a worker costs a shared-memory
        # segment and a file descriptor, which capped the whole path near 2 500 files/s.
        batch["jpeg_data"] = torch.cat([s["jpeg"] for s in jpegs])
        batch["jpeg_sizes"] = [len(s["jpeg"]) for s in jpegs]
    return batch


def jpeg_views(batch: dict) -> list[torch.Tensor]:
    """The batch's JPEG files as views into its one byte buffer (what decode_jpeg takes)."""
    return list(torch.split(batch["jpeg_data"], batch["jpeg_sizes"]))
