"""Small real image files for tests: every mode and every kind of damage extract must survive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, count: int, size=(48, 40), seed: int = 0, prefix: str = "img") -> list[Path]:
    """`count` distinct RGB JPEG/PNG files (alternating), ids prefix-000 ... in sorted order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        suffix = ".jpg" if index % 2 == 0 else ".png"
        path = folder / f"{prefix}-{index:03d}{suffix}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_odd_but_valid_images(folder: Path) -> dict[str, Path]:
    """Images in every mode a contest dataset throws at you; all must be embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(32, 36, 3), dtype=np.uint8)
    paths = {
        "grey": folder / "grey.png",
        "rgba": folder / "rgba.png",
        "cmyk": folder / "cmyk.jpg",
        "png16": folder / "png16.png",
        "palette": folder / "palette.gif",
        "bmp": folder / "plain.bmp",
    }
    Image.fromarray(rgb[..., 0], mode="L").save(paths["grey"])
    rgba = np.dstack([rgb, rng.integers(0, 256, size=(32, 36), dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(paths["rgba"])
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk"])
    deep = (rng.integers(0, 65536, size=(32, 36))).astype(np.uint16)
    Image.fromarray(deep).save(paths["png16"])  # mode I;16
    Image.fromarray(rgb).convert("P").save(paths["palette"])
    Image.fromarray(rgb).save(paths["bmp"])
    return paths


def write_broken_images(folder: Path) -> dict[str, Path]:
    """Files with image extensions that cannot be decoded; each must become an error record."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "empty": folder / "empty.jpg",
        "truncated": folder / "truncated.jpg",
        "text": folder / "notes.png",
        "truncated_png": folder / "cut.png",
    }
    paths["empty"].write_bytes(b"")
    buffer = folder / "whole.tmp"
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    data = buffer.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["text"].write_text("this is not an image\n")
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.read_bytes()
    paths["truncated_png"].write_bytes(data[: len(data) // 2])
    buffer.unlink()
    return paths
