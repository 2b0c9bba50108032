"""`make bench` must keep running: its three parts on tiny inputs, checking the rows it reports."""

from __future__ import annotations

import csv
import json

import pytest

from pipelines.devtools.bench import bench_extract, write_results
from pipelines.devtools.bench_audio import bench_audio
from pipelines.devtools.bench_heads import bench_heads, bench_train_head


@pytest.mark.slow
def test_bench_parts_report_their_ratios(tmp_path):
    (image_row,) = bench_extract(["test_resnet"], image_count=8, batch_size=4, device_name="cpu", naive_count=4)
    assert image_row["extract_img_s"] > 0 and image_row["naive_loop_img_s"] > 0 and image_row["decode_limit_img_s"] > 0
    assert image_row["extract_over_model"] == pytest.approx(image_row["extract_img_s"] / image_row["model_only_img_s"])
    bound = min(image_row["model_only_img_s"], image_row["decode_limit_img_s"])
    assert image_row["extract_over_bound"] == pytest.approx(image_row["extract_img_s"] / bound)
    assert "extract_gpu_decode_img_s" not in image_row  # CPU: the rows that apply
    shared = 1 / (1 / image_row["model_only_img_s"] + 1 / image_row["decode_limit_img_s"])  # decode and model share cores
    assert image_row["shared_cpu_bound_img_s"] == pytest.approx(shared) and shared < bound
    assert image_row["extract_over_shared_bound"] == pytest.approx(image_row["extract_img_s"] / shared)
    assert image_row["extract_forward_s"] > 0 and image_row["extract_seconds"] > 0  # extract's own stage times
    audio_row = bench_audio(count=2, device_name="cpu")
    assert audio_row["extract_clips_s"] > 0 and audio_row["logmel_device_over_librosa"] > 0
    heads_row = bench_train_head(rows=150, dim=16, classes=3, folds=2, repeats=1)
    assert heads_row["ratio"] > 0  # same folds, params and data: the same out-of-fold accuracy
    assert heads_row["train_head_accuracy"] == pytest.approx(heads_row["hand_loop_accuracy"])
    rows = bench_heads(rows=120, dim=16, classes=3, folds=2)
    assert [row["head"] for row in rows] == ["logreg", "mlp", "lgbm"]
    assert all(row["seconds"] > 0 and 0 < row["accuracy"] <= 1 for row in rows)

    table = write_results({"extract": [image_row], "audio": audio_row}, tmp_path / "results.json")
    rows = list(csv.DictReader(table.open()))
    assert [row["kind"] for row in rows] == ["image", "audio"] and rows[0]["backbone"] == "test_resnet"
    assert json.loads((tmp_path / "results.json").read_text())["extract"][0]["backbone"] == "test_resnet"
