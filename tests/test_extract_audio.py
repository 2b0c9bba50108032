"""`olymp extract` on audio: windowing, pooling, mixed files, bad audio, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import read_embeddings, read_errors
from pipelines.extract.mappers.audio import ClipPooler
from pipelines.extract.readers.audio import AudioReader, ClipStream, WindowPlan, stream_windows, window_starts
from pipelines.extract.config import ExtractConfig
from pipelines.data.inputs import InputItem
from pipelines.extract.runner import run_extraction
from tests.audio_files import tone, write_broken_clips, write_mixed_clips, write_odd_but_valid_clips

runner = CliRunner()
STATS = ["--backbone", "logmel-stats", "--workers", "0", "--device", "cpu"]


def audio_config(inputs, output, **overrides) -> ExtractConfig:
    settings = dict(backbone="logmel-stats", workers=0, device="cpu")
    settings.update(overrides)
    return ExtractConfig(inputs=str(inputs), output=str(output), **settings)


@pytest.mark.parametrize("seconds, expected_windows", [(0.2, 1), (10.0, 1), (95.0, 18)])
def test_windows_cover_every_clip_length(tmp_path, seconds, expected_windows):
    rate = 8000
    samples = tone(seconds, rate)
    soundfile.write(tmp_path / "clip.wav", samples, rate, subtype="FLOAT")
    plan = WindowPlan.from_seconds(rate, window=10.0, hop=5.0, min_seconds=0.5)
    windows = list(stream_windows(ClipStream(str(tmp_path / "clip.wav"), rate), plan))
    assert len(windows) == expected_windows
    if seconds >= 10.0:  # full windows, the last flush with the end, matching plain slicing
        starts = window_starts(len(samples), plan.window, plan.hop)
        assert starts[-1] + plan.window == len(samples)
        for start, window in zip(starts, windows):
            np.testing.assert_allclose(window, samples[start:start + plan.window], atol=1e-6)
    else:  # one window: the clip, zero-padded to the model minimum / quarter-second quantum
        (window,) = windows
        assert len(window) == plan.min_length == 4000
        np.testing.assert_allclose(window[:1600], samples, atol=1e-6)
        assert not window[1600:].any()


def test_long_files_stream_in_bounded_batches(tmp_path):
    rate = 8000
    soundfile.write(tmp_path / "long.wav", tone(95.0, rate), rate)
    plan = WindowPlan.from_seconds(rate, window=2.0, hop=2.0, min_seconds=0.1)
    reader = AudioReader([InputItem("long", str(tmp_path / "long.wav"))], plan, batch_size=4)
    batches = list(reader)
    assert max(len(b["ids"]) for b in batches) == 4  # never the whole file at once
    assert sum(len(b["ids"]) for b in batches) == 48
    assert [b["last"][-1] for b in batches][-1] and sum(sum(b["last"]) for b in batches) == 1
    assert batches[-1]["n_windows"][-1] == 48


def test_pooler_is_independent_of_batch_split():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 3)).astype(np.float32)
    ids, last = ["a", "a", "a", "b", "b"], [False, False, True, False, True]
    whole = ClipPooler("meanmax").add(ids, vectors, last)
    pooler = ClipPooler("meanmax")
    first, second = pooler.add(ids[:2], vectors[:2], last[:2]), pooler.add(ids[2:], vectors[2:], last[2:])
    assert first[0] == [] and second[0] == whole[0] == ["a", "b"]
    np.testing.assert_allclose(second[1], whole[1])
    np.testing.assert_allclose(whole[1][0], np.concatenate([vectors[:3].mean(0), vectors[:3].max(0)]), rtol=1e-6)
    assert whole[2] == [3, 2]


def test_mixed_rate_folder_one_row_per_readable_clip(tmp_path):
    clips = write_mixed_clips(tmp_path / "clips")
    broken = write_broken_clips(tmp_path / "clips")
    result = runner.invoke(app, ["extract", str(tmp_path / "clips"), "-o", str(tmp_path / "emb"), *STATS,
                                 "--window", "1.0", "--max-error-rate", "0.9"])
    assert result.exit_code == 0, result.output
    embeddings = read_embeddings(tmp_path / "emb")
    assert sorted(embeddings.ids) == sorted(clips)
    assert np.isfinite(embeddings.vectors).all()
    assert {row["id"] for row in read_errors(tmp_path / "emb")} == {p.stem for p in broken.values()}
    table = pq.read_table(next((tmp_path / "emb").glob("part-*.parquet")))
    counts = dict(zip(table.column("id").to_pylist(), table.column("n_windows").to_pylist()))
    assert counts["flac44k"] == 2 and counts["deep24"] == 1  # 2.0 s and 0.7 s at 1 s windows
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["modality"] == "audio" and manifest["preprocessing"]["window_seconds"] == 1.0
    assert pd.read_parquet(tmp_path / "emb")["embedding"].map(len).unique().tolist() == [embeddings.dim]


def test_odd_audio_is_embedded(tmp_path):
    odd = write_odd_but_valid_clips(tmp_path / "odd")
    summary = run_extraction(audio_config(tmp_path / "odd", tmp_path / "emb"))
    assert (summary.embedded, summary.errors) == (len(odd), 0)
    assert np.isfinite(read_embeddings(summary.output).vectors).all()


def test_same_clip_same_embedding_whatever_the_batch(tmp_path):
    write_mixed_clips(tmp_path / "clips")
    alone = read_embeddings(run_extraction(audio_config(tmp_path / "clips", tmp_path / "b1", batch_size=1, window=0.5)).output)
    packed = read_embeddings(run_extraction(audio_config(tmp_path / "clips", tmp_path / "b8", batch_size=8, window=0.5)).output)
    order_a, order_b = np.argsort(alone.ids), np.argsort(packed.ids)
    assert list(alone.ids[order_a]) == list(packed.ids[order_b])
    np.testing.assert_allclose(alone.vectors[order_a], packed.vectors[order_b], rtol=1e-4, atol=1e-4)


def test_audio_resume_after_interruption(tmp_path):
    (tmp_path / "clips").mkdir()
    for index in range(12):
        soundfile.write(tmp_path / "clips" / f"c{index:02d}.wav", tone(0.5, 16000, 200 + 50 * index, index), 16000)
    config = audio_config(tmp_path / "clips", tmp_path / "emb", batch_size=2, part_size=3)
    batches = []

    def interrupt(event):
        if event.stage == "batch":
            batches.append(1)
            if len(batches) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_extraction(config, on_progress=interrupt)
    assert 0 < len(read_embeddings(tmp_path / "emb").ids) < 12
    summary = run_extraction(config)
    assert summary.resumed > 0
    ids = list(read_embeddings(tmp_path / "emb").ids)
    assert sorted(ids) == [f"c{i:02d}" for i in range(12)]


def test_decode_workers_share_the_files_without_loss_or_duplicates(tmp_path):
    clips = write_mixed_clips(tmp_path / "clips")
    write_broken_clips(tmp_path / "clips")
    inline = read_embeddings(run_extraction(audio_config(tmp_path / "clips", tmp_path / "w0", window=0.5,
                                                         max_error_rate=1.0)).output)
    summary = run_extraction(audio_config(tmp_path / "clips", tmp_path / "w2", window=0.5, workers=2, max_error_rate=1.0))
    parallel = read_embeddings(summary.output)
    assert sorted(parallel.ids) == sorted(inline.ids) == sorted(clips)
    assert summary.errors == 4
    order_a, order_b = np.argsort(inline.ids), np.argsort(parallel.ids)
    np.testing.assert_allclose(inline.vectors[order_a], parallel.vectors[order_b], rtol=1e-4, atol=1e-4)


def test_default_audio_backbone_falls_back_to_packaged_lite0_and_says_why(tmp_path, hf_cache):
    (tmp_path / "clips").mkdir()
    for index in range(2):
        soundfile.write(tmp_path / "clips" / f"c{index}.wav", tone(0.6, 16000, 300 * (index + 1)), 16000)
    result = runner.invoke(app, ["extract", str(tmp_path / "clips"), "-o", str(tmp_path / "emb"),
                                 "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "PANNs Cnn14 weights are not on disk" in result.stderr
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["backbone"] == "efficientnet_lite0" and manifest["modality"] == "audio"
    assert "olymp weights pull panns-cnn14" in manifest["backbone_note"]
    assert read_embeddings(tmp_path / "emb").dim == 1280
