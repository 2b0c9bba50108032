"""The CUDA path of extract (bf16 autocast, channels_last, pinned uint8 batches) against the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.backbones import load_backbone
from pipelines.data.embeddings import fingerprint, read_embeddings
from pipelines.extract.config import ExtractConfig
from pipelines.extract.runner import run_extraction

pytestmark = pytest.mark.requires_cuda


def write_photos(folder):
    from skimage import data

    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg", quality=95)
    return folder


def test_gpu_embeddings_match_cpu_and_still_classify(tmp_path):
    photos = write_photos(tmp_path / "photos")
    runs = {}
    for device in ("cpu", "cuda"):
        summary = run_extraction(ExtractConfig(inputs=str(photos), output=str(tmp_path / device), device=device, workers=2))
        assert summary.device.startswith(device) and summary.embedded == 4
        runs[device] = read_embeddings(summary.output)
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert list(cpu.ids) == list(gpu.ids) and fingerprint(cpu.manifest) == fingerprint(gpu.manifest)
    cosine = (cpu.vectors * gpu.vectors).sum(1) / np.linalg.norm(cpu.vectors, axis=1) / np.linalg.norm(gpu.vectors, axis=1)
    assert cosine.min() > 0.99, cosine  # bf16 autocast: close, not bit-equal

    classifier = load_backbone("efficientnet_lite0").model.get_classifier()
    with torch.inference_mode():
        top1 = dict(zip(gpu.ids, classifier(torch.from_numpy(gpu.vectors)).argmax(1).tolist()))
    assert 281 <= top1["chelsea"] <= 285 and top1["coffee"] in (967, 968)
