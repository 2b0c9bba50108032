"""--decode gpu: JPEG bytes → nvJPEG on the GPU → resize + center crop there, as the CPU transform does.

The CPU path (timm's eval transform on PIL images) resizes the shorter side to
floor(size / crop_pct) and crops the center; here the same sizes come from torchvision's
tensor ops with antialiasing, so embeddings agree closely (not bit-exactly: another decoder
and resampler). Files nvJPEG rejects are decoded on the CPU instead, or recorded as errors.
"""

from __future__ import annotations

import math

import torch

from pipelines.extract.readers.image import describe, load_rgb, make_image_transform


def supports_gpu_decode(data_config: dict) -> str | None:
    """None when the model's eval transform is resize + center crop (what the GPU path does), else why not."""
    if data_config.get("crop_mode", "center") != "center":
        return f"crop_mode {data_config.get('crop_mode')!r} is not a center crop"
    return None


class DeviceJpegDecoder:
    def __init__(self, data_config: dict, device: torch.device, max_pixels: int):
        from torchvision.transforms import InterpolationMode

        self.device = device
        _, height, width = data_config["input_size"]
        self.crop = [height, width]
        crop_pct = data_config.get("crop_pct") or 1.0
        # timm transforms_imagenet_eval: scale_size = floor(img_size / crop_pct), shorter side
        if height == width:
            self.resize = [math.floor(height / crop_pct)]
        else:
            self.resize = [math.floor(height / crop_pct), math.floor(width / crop_pct)]
        self.interpolation = InterpolationMode(data_config.get("interpolation", "bilinear"))
        self.cpu_transform = make_image_transform(data_config)
        self.max_pixels = max_pixels

    def __call__(self, ids: list[str], paths: list[str], jpegs: list[torch.Tensor]):
        """(ids, uint8 (B, C, H, W) on the device or None, error records)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            decoded = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # one bad file fails the batch call: go one by one
            decoded = []
            for data in jpegs:
                try:
                    decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    decoded.append(None)
        ok_ids, raw, ready, errors = [], [], [], []
        for item_id, image in zip(ids, decoded):
            if image is not None:
                ok_ids.append(item_id)
                raw.append(image)
        for item_id, path, image in zip(ids, paths, decoded):
            if image is None:  # nvJPEG said no: PIL may still read it (transformed on the CPU)
                try:
                    ready.append(self.cpu_transform(load_rgb(path, self.max_pixels)).to(self.device))
                    ok_ids.append(item_id)
                except Exception as error:
                    errors.append({"id": item_id, "path": path, "error": describe(error)})
        images = self.resize_crop(raw) + ready
        return ok_ids, (torch.stack(images) if images else None), errors

    def resize_crop(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Images of one size are resized in one call (a folder of camera photos: one call per batch)."""
        from torchvision.transforms.v2 import functional as F

        out: list[torch.Tensor] = [None] * len(images)  # type: ignore[list-item]
        groups: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(index)
        for members in groups.values():
            stack = torch.stack([images[i] for i in members])
            stack = F.resize(stack, self.resize, interpolation=self.interpolation, antialias=True)
            stack = F.center_crop(stack, self.crop)
            for position, index in enumerate(members):
                out[index] = stack[position]
        return out
