"""logmel-stats on real-format clips: each clip's own bandwidth, padding out of the statistics."""

from __future__ import annotations

import numpy as np
import soundfile
import soxr
import torch
from typer.testing import CliRunner

from cli.app import app
from pipelines.backbones.audio import load_audio_backbone
from pipelines.backbones.audio.logmel import STATS_FEATURE_NAMES, STATS_N_MELS, load_logmel_stats, stats_layout
from pipelines.data.embeddings import read_embeddings


runner = CliRunner()
N = STATS_N_MELS


def noisy_tone(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def test_an_8_khz_clip_has_no_constant_bands(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    soundfile.write(clips / "phone.wav", noisy_tone(3.0, 8000), 8000, subtype="PCM_16")
    result = runner.invoke(app, ["extract", str(clips), "-o", str(tmp_path / "emb"), "--backbone", "logmel-stats",
                                 "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    vector = read_embeddings(tmp_path / "emb").vectors[0]
    mean, std = vector[:N], vector[N : 2 * N]
    # Every band lies inside the clip's 4 kHz bandwidth: each one moves with the signal over
    # time; none sits at the log floor (ln 1e-6 = -13.8) with no variation.
    assert (std > 0.05).all(), np.round(std, 3)
    assert (mean > np.log(1e-6) + 3).all(), np.round(mean, 2)
    # The companions too: every delta, MFCC and spectral-contrast band moves over time (a band
    # past the clip's Nyquist would sit still: std ~1e-7), and delta2 (not in the default; small
    # by construction, ~0.03) on the same clip as the reader gives it (soxr to 16 kHz).
    every = load_logmel_stats(features=STATS_FEATURE_NAMES)
    at_16k = soxr.resample(noisy_tone(3.0, 8000), 8000, 16000).astype(np.float32)
    for vector, layout in ((vector, stats_layout()),
                           (every.embed(torch.from_numpy(at_16k)[None], [8000])[0].numpy(), stats_layout(STATS_FEATURE_NAMES))):
        for block, where in layout.items():
            if block.endswith("std"):
                assert (vector[where] > 0.01).all(), (block, np.round(vector[where], 3))


def test_bands_follow_the_rate_the_clip_came_from():
    backbone = load_logmel_stats()
    wide = torch.from_numpy(noisy_tone(2.0, 16000))[None]
    narrow, full = backbone.embed(wide, [8000]), backbone.embed(wide, [16000])
    assert not torch.allclose(narrow, full)  # 64 bands over 0-4 kHz vs over 0-8 kHz
    assert torch.equal(backbone.embed(wide, [None]), full) and torch.equal(backbone.embed(wide), full)


def test_end_padding_stays_out_of_the_statistics():
    backbone = load_logmel_stats()
    clip = torch.from_numpy(noisy_tone(0.7, 16000, seed=3))
    padded = torch.cat([clip, torch.zeros(16000 * 2)])  # what the reader does to a short clip
    alone, with_padding = backbone.embed(clip[None]), backbone.embed(padded[None])
    torch.testing.assert_close(with_padding, alone, atol=1e-4, rtol=1e-4)


def test_a_silent_clip_is_finite():
    embedding = load_logmel_stats().embed(torch.zeros(2, 16000), [44100, 8000])
    assert torch.isfinite(embedding).all()
    torch.testing.assert_close(embedding[:, :N], torch.full((2, N), float(np.log(1e-6))))
