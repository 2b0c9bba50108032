"""`make bench`: throughput ratios measured in one run on this machine.

    python -m pipelines.bench [--images 200] [--backbones resnet50,efficientnet_lite0]

Images, per backbone: (a) `extract` end to end from JPEG files, (b) forward-only on tensors already in
memory (same batch size, same threads), (c) a naive loop (PIL open → transform → forward, one
image at a time); ratios a/b and a/c. Audio: the same three for PANNs Cnn14 on 10 s clips, and
log-mel on the device vs librosa (pipelines/bench_audio.py). Then train-head (lgbm) against a
plain hand-written LightGBM fold loop with the same parameters, and each head's (logreg, mlp, lgbm)
time and OOF accuracy on a demo-sized 1.5k x 1280-d set (pipelines/bench_heads.py). Results also go to .bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines.extract.config import ExtractConfig
from pipelines.extract.inputs import list_inputs
from pipelines.extract.mapper import ImageMapper, default_batch_size, resolve_device, resolve_precision
from pipelines.extract.runner import run_extraction

RESULTS = Path(".bench/results.json")


def write_photo_like_jpegs(folder: Path, count: int, size=(500, 375), seed: int = 0) -> None:
    """ImageNet-sized JPEGs with smooth structure (compress like photos, unlike white noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
        noise = rng.normal(0, 8, size=(size[1], size[0], 3))
        pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo-{index:04d}.jpg", quality=90)


def time_extract(images: Path, backbone: str, batch_size: int, device: str) -> float:
    """Same batch size and precision as forward-only; workers and threads as a user gets them."""
    output = Path(tempfile.mkdtemp(prefix="olymp-bench-"))
    try:
        summary = run_extraction(ExtractConfig(
            inputs=str(images), output=str(output / "emb"), backbone=backbone, weights="random",
            device=device, batch_size=batch_size,
        ))
        return summary.items_per_second
    finally:
        shutil.rmtree(output)


def time_forward_only(backbone, device: torch.device, batch_size: int, count: int) -> float:
    mapper = ImageMapper(backbone, device)
    _, height, width = backbone.data_config["input_size"]
    batch = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8)
    mapper(batch)  # warm-up: allocator, cudnn autotune, lazy init
    synchronize(device)
    batches = max(1, count // batch_size)
    started = time.perf_counter()
    for _ in range(batches):
        mapper(batch)
    synchronize(device)
    return batches * batch_size / (time.perf_counter() - started)


def time_naive_loop(images: Path, backbone, device: torch.device, count: int) -> float:
    """What a first notebook does: open, transform, forward, one image at a time."""
    from timm.data import create_transform

    transform = create_transform(**backbone.data_config, is_training=False)
    model = backbone.model.to(device).eval()
    paths = [item.path for item in list_inputs(images)][:count]
    started = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            tensor = transform(Image.open(path).convert("RGB")).unsqueeze(0).to(device)
            model.forward_head(model.forward_features(tensor), pre_logits=True).cpu()
    synchronize(device)
    return len(paths) / (time.perf_counter() - started)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_extract(backbones: list[str], image_count: int, batch_size: int | None, device_name: str, naive_count: int) -> list[dict]:
    from pipelines.backbones import load_backbone

    device = resolve_device(device_name)
    batch_size = batch_size or default_batch_size(device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="olymp-bench-jpegs-") as tmp:
        images = Path(tmp) / "jpegs"
        write_photo_like_jpegs(images, image_count)
        for name in backbones:
            backbone = load_backbone(name, "random")
            forward = time_forward_only(backbone, device, batch_size, image_count)
            end_to_end = time_extract(images, name, batch_size, device_name)
            naive = time_naive_loop(images, backbone, device, naive_count)
            rows.append({
                "backbone": name, "device": str(device), "precision": resolve_precision("auto", device),
                "threads": torch.get_num_threads(),
                "batch_size": batch_size, "images": image_count,
                "extract_img_s": end_to_end, "forward_only_img_s": forward, "naive_loop_img_s": naive,
                "extract_over_forward": end_to_end / forward, "extract_over_naive": end_to_end / naive,
            })
            print_row(rows[-1])
    return rows


def print_row(row: dict) -> None:
    print(
        f"{row['backbone']:<20} {row['device']:<6} {row['precision']:<5} bs {row['batch_size']:<4} extract {row['extract_img_s']:8.1f} img/s | "
        f"forward-only {row['forward_only_img_s']:8.1f} | naive {row['naive_loop_img_s']:7.1f} | "
        f"a/b {row['extract_over_forward']:.2f} | a/c {row['extract_over_naive']:.2f}",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs to extract per backbone")
    parser.add_argument("--naive-images", type=int, default=64, help="images through the naive loop")
    parser.add_argument("--backbones", default="resnet50,efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=None, help="default: extract's per-device default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--audio-clips", type=int, default=24, help="10 s clips for the audio rows")
    parser.add_argument("--skip-heads", action="store_true")
    parser.add_argument("--skip-audio", action="store_true")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {resolve_device(args.device)}")
    results = {"extract": bench_extract(args.backbones.split(","), args.images, args.batch_size, args.device, args.naive_images)}
    if not args.skip_audio:
        from pipelines.bench_audio import bench_audio

        results["audio"] = bench_audio(args.audio_clips, args.device)
    if not args.skip_heads:
        from pipelines.bench_heads import bench_heads, bench_train_head

        results["train_head"] = bench_train_head()
        results["heads"] = bench_heads()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
