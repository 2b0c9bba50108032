"""Inputs of a fine-tuned network, plain (evaluation) and augmented (training), per labelled file.

Images: timm's own transforms, `create_transform(is_training=False)` for evaluation (the model's
data config at the training resolution) and `create_transform(is_training=True)` for training
(random resized crop with scale 0.25-1, colour jitter, horizontal flips only with --hflip,
RandAugment/AutoAugment with --auto-augment). Audio: a random crop of one window from the clip,
a random gain (+-6 dB), a random circular time shift (up to a fifth of the window), the log-mel
image front end, then torchaudio's SpecAugment masks (FrequencyMasking, TimeMasking).
Mixup/CutMix (timm's `Mixup`) act on whole batches in the training loop.

Augmented views are seeded by (seed, input, view): the same view is the same tensor in every
process, so cached views and a resumed run see exactly what an uninterrupted run would.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

from pipelines.data.inputs import InputItem

TRAIN_SCALE = (0.25, 1.0)
GAIN_DB = 6.0
SHIFT_SHARE = 0.2


@contextmanager
def seeded(seed: int):
    """Python's and torch's RNGs seeded for one augmented view, restored afterwards."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def view_seed(seed: int, row: int, view: int) -> int:
    return (seed * 1_000_003 + row * 7919 + view * 104_729) % (2**31 - 1)


class ImageInputs:
    """Labelled image files -> normalized (C, H, W) tensors."""

    modality = "image"

    def __init__(self, items: Sequence[InputItem], data_config: dict, hflip: bool, auto_augment: str | None):
        from timm.data import create_transform

        self.items = items
        self.eval_transform = create_transform(**data_config, is_training=False)
        self.train_transform = create_transform(
            input_size=data_config["input_size"], is_training=True, scale=TRAIN_SCALE,
            hflip=0.5 if hflip else 0.0, auto_augment=auto_augment,
            interpolation=data_config.get("interpolation", "bilinear"), mean=data_config["mean"], std=data_config["std"],
        )

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, row: int):
        from pipelines.finetune.data import load_image

        return load_image(self.items[row].path)

    def eval_inputs(self, row: int) -> torch.Tensor:
        """(1, C, H, W): the evaluation view."""
        return self.eval_transform(self._image(row)).unsqueeze(0)

    def train_input(self, row: int, seed: int) -> torch.Tensor:
        with seeded(seed):
            return self.train_transform(self._image(row))


class AudioInputs:
    """Labelled clips (decoded once, kept in memory) -> log-mel images (C, H, W)."""

    modality = "audio"

    def __init__(self, items: Sequence[InputItem], audio, data_config: dict, spec_augment: bool):
        from pipelines.finetune.audio import FrontEnd, window_plan
        from pipelines.finetune.data import read_clip

        self.items = items
        self.audio = audio
        self.front_end = FrontEnd(audio, data_config)
        self.plan = window_plan(audio)
        self.clips = [read_clip(item.path, audio.sample_rate) for item in items]
        self.spec_augment = spec_augment
        _, height, width = data_config["input_size"]
        self.height, self.width = int(height), int(width)

    def __len__(self) -> int:
        return len(self.items)

    def eval_inputs(self, row: int) -> torch.Tensor:
        """(n_windows, C, H, W)."""
        from pipelines.finetune.audio import clip_windows

        return torch.cat([self.front_end(torch.from_numpy(np.ascontiguousarray(w))[None])
                          for w in clip_windows(self.clips[row], self.plan)])

    def train_input(self, row: int, seed: int) -> torch.Tensor:
        import torchaudio.transforms as T

        clip, window = self.clips[row], self.plan.window
        rng = np.random.default_rng(seed)
        if len(clip) > window:  # a random crop of one window
            start = int(rng.integers(0, len(clip) - window + 1))
            wave = clip[start: start + window].copy()
        else:  # padded as for evaluation
            wave = np.zeros(self.plan.padded_length(len(clip)), np.float32)
            wave[: len(clip)] = clip
        shift = int(SHIFT_SHARE * len(wave))
        wave = np.roll(wave, int(rng.integers(-shift, shift + 1)))
        wave = wave * np.float32(10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20))
        image = self.front_end(torch.from_numpy(wave).unsqueeze(0))[0]
        if self.spec_augment:
            with seeded(seed):
                image = T.FrequencyMasking(max(1, self.height // 8))(image)
                image = T.TimeMasking(max(1, self.width // 8))(image)
        return image


class TrainViews(torch.utils.data.Dataset):
    """(input, label) for training rows; each row's view drawn by `epoch_seed` (DataLoader workers welcome)."""

    def __init__(self, inputs, rows: np.ndarray, labels: np.ndarray, epoch_seed: int):
        self.inputs, self.rows, self.labels, self.epoch_seed = inputs, rows, labels, epoch_seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int):
        row = int(self.rows[j])
        return self.inputs.train_input(row, view_seed(self.epoch_seed, row, 0)), int(self.labels[row])


class EvalViews(torch.utils.data.Dataset):
    """(windows, row) for evaluation rows (images: one window)."""

    def __init__(self, inputs, rows: np.ndarray):
        self.inputs, self.rows = inputs, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int):
        row = int(self.rows[j])
        return self.inputs.eval_inputs(row), row


def collate_eval(samples):
    """Windows of several rows in one batch, with the row of each window."""
    tensors = torch.cat([s[0] for s in samples])
    owners = torch.cat([torch.full((len(s[0]),), s[1], dtype=torch.long) for s in samples])
    return tensors, owners
