"""Audio reader stage: decode → mono → resample → fixed windows, streamed in DataLoader workers.

Files are read in blocks and resampled as a stream, so an hour-long recording never sits in
memory whole: a worker holds one block plus at most one batch of windows.

Windowing (per clip of n samples at the backbone's rate; W = window, H = hop):
- n ≥ W: windows start at 0, H, 2H, ... and one more ends exactly at the clip's end, so every
  window is W long and every sample is covered;
- n < W: one window holding the whole clip, zero-padded up to a multiple of PAD_QUANTUM
  seconds (and at least the model's minimum). The padding depends on the clip alone, so a
  clip's embedding never depends on which other clips share its batch.

Windows of equal length are batched together (one bucket per length), so long and short clips
mix without padding everything to the longest.

A batch is a plain dict: clip ids, window waveforms (b, length), which window is the clip's
last (with the clip's window count), and error records for files that could not be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from pipelines.core.errors import ConfigError, first_line
from pipelines.data.inputs import InputItem

LIBROSA_FALLBACK = frozenset({".m4a", ".mp3", ".aac", ".opus", ".wma"})
PAD_QUANTUM_SECONDS = 0.25  # short clips are padded to a multiple of this
READ_BLOCK_SECONDS = 30.0  # decode this much at a time


@dataclass(frozen=True)
class WindowPlan:
    sample_rate: int  # Hz after resampling (the backbone's)
    window: int  # samples per window
    hop: int  # samples between window starts
    min_length: int  # the model's shortest input, in samples

    @classmethod
    def from_seconds(cls, sample_rate: int, window: float, hop: float, min_seconds: float) -> WindowPlan:
        if window <= 0 or hop <= 0 or hop > window:
            raise ConfigError(f"--window {window:g} / --hop {hop:g}: both must be positive seconds, hop ≤ window")
        return cls(sample_rate, round(window * sample_rate), max(1, round(hop * sample_rate)),
                   max(1, math.ceil(min_seconds * sample_rate)))

    def padded_length(self, n: int) -> int:
        quantum = max(1, round(PAD_QUANTUM_SECONDS * self.sample_rate))
        return min(self.window, max(self.min_length, math.ceil(n / quantum) * quantum))


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Starts of the windows of a clip of n ≥ window samples (the last one flush with the end)."""
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


class ClipStream:
    """Decoded, mono, resampled blocks of one file; raises on unreadable input."""

    def __init__(self, path: str, sample_rate: int):
        self.path = path
        self.sample_rate = sample_rate
        self.source_rate: int | None = None  # the file's own rate once opened (None: unknown)

    def blocks(self) -> Iterator[np.ndarray]:
        import soundfile

        try:
            handle = soundfile.SoundFile(self.path)
        except Exception as soundfile_error:
            if Path(self.path).suffix.lower() not in LIBROSA_FALLBACK:
                raise ValueError(f"unreadable audio ({soundfile_reason(soundfile_error, self.path)})") from None
            # A compressed format libsndfile lacks (m4a, ...): librosa through audioread/ffmpeg,
            # which reads the whole file at once.
            yield from self._librosa_whole_file(soundfile_error)
            return
        with handle:
            cut = truncation(self.path, handle.format)
            if cut:  # libsndfile would decode the readable part without a word: record it instead
                raise ValueError(cut)
            source_rate = self.source_rate = int(handle.samplerate)
            resampler = None
            if source_rate != self.sample_rate:
                import soxr

                resampler = soxr.ResampleStream(source_rate, self.sample_rate, 1, dtype="float32")
            block_frames = max(1, int(READ_BLOCK_SECONDS * source_rate))
            for block in handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                mono = clean(block.mean(axis=1))
                yield resampler.resample_chunk(mono, last=False) if resampler else mono
            if resampler:
                yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)

    def _librosa_whole_file(self, soundfile_error: Exception) -> Iterator[np.ndarray]:
        import warnings

        import librosa

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread" on every file
                audio, _ = librosa.load(self.path, sr=self.sample_rate, mono=True)
        except Exception as error:
            librosa_reason = "no decoder could read it" if type(error).__name__ == "NoBackendError" else first_line(error)
            raise ValueError(f"unreadable audio ({soundfile_reason(soundfile_error, self.path)}; "
                             f"librosa: {librosa_reason})") from None
        yield clean(audio.astype(np.float32))


def soundfile_reason(error: Exception, path: str) -> str:
    """libsndfile says "File does not exist or is not a regular file" for any format it does not
    know: for a file that does exist, say what is really wrong."""
    text = first_line(error)
    if "does not exist" in text and Path(path).is_file():
        return "not a readable audio file (unknown or corrupt format)"
    return text


def truncation(path: str, container: str) -> str | None:
    """Why a file that libsndfile opened is cut short, or None. libsndfile decodes a truncated WAV,
    AIFF or Ogg up to the cut without an error (FLAC it refuses itself), so the containers are
    checked: the sample chunk's declared size against the file's, and Ogg's end-of-stream page."""
    import os
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if container in ("WAV", "WAVEX", "AIFF"):
                big = container == "AIFF"
                head = f.read(12)
                if len(head) < 12 or head[:4] not in (b"RIFF", b"FORM"):
                    return None  # RF64, W64, ...: not checked
                offset, wanted = 12, (b"SSND" if big else b"data")
                while offset + 8 <= size:
                    f.seek(offset)
                    chunk, length = struct.unpack(">4sI" if big else "<4sI", f.read(8))
                    if chunk == wanted:
                        if length in (0, 0xFFFFFFFF):  # streamed: size unknown
                            return None
                        if offset + 8 + length > size:
                            return (f"truncated audio (its header promises {length:,} bytes of samples, "
                                    f"the file holds {size - offset - 8:,}); re-copy or re-download the file")
                        return None
                    offset += 8 + length + (length & 1)
                return None
            if container == "OGG":
                f.seek(max(0, size - 65536))
                tail = f.read()
                last = tail.rfind(b"OggS")
                if last < 0 or last + 5 >= len(tail):
                    return None
                if not tail[last + 5] & 0x04:
                    return ("truncated audio (the Ogg stream has no end-of-stream page: the file was cut short); "
                            "re-copy or re-download the file")
    except (OSError, struct.error):
        return None
    return None


def clean(samples: np.ndarray) -> np.ndarray:
    """NaN/inf samples become silence: one bad sample must not turn a whole embedding into NaN."""
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples.astype(np.float32, copy=False)


class AudioReader(torch.utils.data.IterableDataset):
    """Yields batches of windows; each worker reads its own share of the files."""

    def __init__(self, items: Sequence[InputItem], plan: WindowPlan, batch_size: int):
        self.items = items
        self.plan = plan
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        items = self.items if info is None else self.items[info.id:: info.num_workers]
        buckets: dict[int, list[tuple]] = {}  # window length -> [(clip id, waveform, last, n_windows, source rate)]
        errors: list[dict] = []
        for item in items:
            try:
                stream = ClipStream(item.path, self.plan.sample_rate)
                for waveform, last, count in with_last_flag(stream_windows(stream, self.plan)):
                    bucket = buckets.setdefault(len(waveform), [])
                    bucket.append((item.id, waveform, last, count, stream.source_rate))
                    if len(bucket) >= self.batch_size:
                        yield make_batch(bucket, errors)
                        buckets[len(waveform)], errors = [], []
            except Exception as error:  # any decode failure becomes a record, never a crash
                # Windows of this clip still waiting in a bucket are dropped; ones already
                # sent are discarded by the pooler when it sees this record.
                for length, bucket in buckets.items():
                    buckets[length] = [w for w in bucket if w[0] != item.id]
                errors.append({"id": item.id, "path": item.path, "error": describe(error)})
                if len(errors) >= self.batch_size:
                    yield make_batch([], errors)
                    errors = []
        for bucket in buckets.values():
            if bucket:
                yield make_batch(bucket, errors)
                errors = []
        if errors:
            yield make_batch([], errors)


def with_last_flag(windows: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, bool, int]]:
    """(window, is_last, count so far) with one window of look-ahead: streaming, yet the
    consumer knows which window closes the clip."""
    held, count = None, 0
    for window in windows:
        if held is not None:
            yield held, False, count
        held, count = window, count + 1
    if held is not None:
        yield held, True, count


def stream_windows(stream: ClipStream, plan: WindowPlan) -> Iterator[np.ndarray]:
    """Windows of one clip, keeping only the samples still needed (bounded memory)."""
    window, hop = plan.window, plan.hop
    history = np.zeros(0, np.float32)  # the last `window` samples seen (for the tail window)
    pending = np.zeros(0, np.float32)  # samples from the next window start onward
    total = emitted_end = next_start = 0
    for block in stream.blocks():
        if not len(block):
            continue
        total += len(block)
        pending = np.concatenate([pending, block])
        history = np.concatenate([history, block])[-window:]
        while len(pending) >= window:
            yield pending[:window].copy()
            emitted_end = next_start + window
            pending = pending[hop:]
            next_start += hop
    if total == 0:
        raise ValueError("empty audio (0 samples)")
    if emitted_end == 0:  # shorter than one window: the whole clip, padded
        padded = np.zeros(plan.padded_length(total), np.float32)
        padded[:total] = history[-total:]
        yield padded
    elif emitted_end < total:  # one more window, flush with the end
        yield history.copy()


def make_batch(windows: list[tuple], errors: list[dict]) -> dict:
    return {
        "ids": [w[0] for w in windows],
        "waveforms": torch.from_numpy(np.stack([w[1] for w in windows])) if windows else None,
        "last": [w[2] for w in windows],
        "n_windows": [w[3] for w in windows],
        "source_rates": [w[4] for w in windows],  # the files' own rates: logmel-stats keeps to their bandwidth
        "errors": list(errors),
    }


def describe(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    return first_line(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {first_line(error)}"
