"""A quick look at a data folder before choosing a backbone: how many files, which modality,
how large the images are, how long the clips are, how many files are unreadable.

Cheap reads only: each sampled image is decoded at reduced scale (JPEG draft mode), which
still finds truncated files; soundfile reads a clip's frames and rate from its header. A
sample of 200 files takes well under a second.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.data.inputs import extensions_for, infer_modality, list_inputs

SAMPLE_SIZE = 200  # files whose headers are read; counts cover every file


@dataclass
class DataProbe:
    path: str  # the folder or listing probed
    modality: str  # image | audio (from the extensions, or as asked)
    n_items: int  # files of that modality (all of them, not the sample)
    extensions: dict[str, int]  # ".jpg" -> count, over all files of the modality
    sampled: int  # files whose headers were read
    unreadable: int  # of the sampled files: could not be opened (expect the same share in extract)
    # --- images (None for audio)
    image_size_median: tuple[int, int] | None = None  # (width, height) of the sample
    image_size_min: tuple[int, int] | None = None  # smallest by area
    image_size_max: tuple[int, int] | None = None  # largest by area
    # --- audio (None for images)
    duration_median_s: float | None = None  # seconds per clip, median of the sample
    duration_mean_s: float | None = None  # seconds per clip, mean of the sample (drives the time estimate)
    duration_max_s: float | None = None
    total_audio_s: float | None = None  # mean duration × n_items: an estimate
    sample_rates: dict[int, int] = field(default_factory=dict)  # Hz -> clips in the sample

    def as_dict(self) -> dict:
        return asdict(self)


def probe_data(path: str | Path, modality: str = "auto", sample_size: int = SAMPLE_SIZE, seed: int = 0) -> DataProbe:
    """Count every file, read the headers of a seeded random sample of `sample_size` files."""
    modality = infer_modality(path, modality)
    items = list_inputs(path, extensions_for(modality))
    extensions: dict[str, int] = {}
    for item in items:
        suffix = Path(item.path).suffix.lower()
        extensions[suffix] = extensions.get(suffix, 0) + 1
    sample = items if len(items) <= sample_size else random.Random(seed).sample(items, sample_size)
    probe = DataProbe(str(path), modality, len(items), dict(sorted(extensions.items())), len(sample), 0)
    if modality == "audio":
        _probe_audio(probe, [item.path for item in sample])
    else:
        _probe_images(probe, [item.path for item in sample])
    return probe


def _probe_images(probe: DataProbe, paths: list[str]) -> None:
    from PIL import Image

    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size  # from the header
                image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, fast, still finds truncation
                image.load()
                sizes.append(size)
        except Exception:  # noqa: BLE001 — any failure to open is what we count
            probe.unreadable += 1
    if sizes:
        by_area = sorted(sizes, key=lambda wh: wh[0] * wh[1])
        probe.image_size_min, probe.image_size_max = by_area[0], by_area[-1]
        probe.image_size_median = (int(statistics.median(w for w, _ in sizes)), int(statistics.median(h for _, h in sizes)))


def _probe_audio(probe: DataProbe, paths: list[str]) -> None:
    import soundfile

    durations, rates = [], {}
    for path in paths:
        try:
            info = soundfile.info(path)
        except Exception:  # noqa: BLE001
            probe.unreadable += 1
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            probe.unreadable += 1  # extract records these as errors too
            continue
        durations.append(info.frames / info.samplerate)
        rates[info.samplerate] = rates.get(info.samplerate, 0) + 1
    if durations:
        probe.duration_median_s = round(statistics.median(durations), 3)
        probe.duration_mean_s = round(statistics.fmean(durations), 3)
        probe.duration_max_s = round(max(durations), 3)
        probe.total_audio_s = round(probe.duration_mean_s * probe.n_items, 1)
        probe.sample_rates = dict(sorted(rates.items()))
