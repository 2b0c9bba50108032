"""Scaling out extract: shards (torchrun, --num-shards), out-of-memory back-off, the GPU-only
options falling back on a CPU, and the CPU side of --decode gpu (its resize/crop)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import load_manifest, read_embeddings, read_errors
from pipelines.extract.config import ExtractConfig
from pipelines.extract.runner import run_extraction
from pipelines.extract.shards import resolve_shard, shard_bounds
from tests.image_files import write_broken_images, write_images

REPO = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu", "--batch-size", "4"]
runner = CliRunner()


def extract_cli(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


def assert_same_embeddings(got, want):
    order = np.argsort(got.ids)
    assert list(got.ids[order]) == sorted(want.ids)
    np.testing.assert_allclose(got.vectors[order], want.vectors[np.argsort(want.ids)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 10, 97, 1000, 1001])
def test_shards_cover_every_input_exactly_once(total):
    for count in range(1, 40):
        bounds = [shard_bounds(total, count, index) for index in range(count)]
        covered = [i for start, stop in bounds for i in range(start, stop)]
        assert covered == list(range(total)), (total, count)  # contiguous, in order, once each
        sizes = [stop - start for start, stop in bounds]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("env", "options", "expected"), [
    ({}, (None, None), (0, 1, "none")),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, (None, None), (3, 4, "torchrun")),
    ({"RANK": "3", "WORLD_SIZE": "4"}, (8, 5), (5, 8, "options")),  # explicit options win
])
def test_shard_comes_from_options_or_torchrun(monkeypatch, env, options, expected):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shard = resolve_shard(*options)
    assert (shard.index, shard.count, shard.launcher) == expected


@pytest.mark.parametrize(("args", "expected_error"), [
    (["--num-shards", "2"], "--num-shards and --shard-index go together"),
    (["--num-shards", "2", "--shard-index", "2"], "--shard-index 0..1"),
    (["--batch-size", "many"], "--batch-size auto"),
    (["--tta", "vflip"], "use one of none, hflip"),
    (["--decode", "tpu"], "use cpu or gpu"),
])
def test_bad_scaling_options_name_the_fix(tmp_path, args, expected_error):
    write_images(tmp_path / "imgs", 2)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, *args)
    assert result.exit_code == 1 and expected_error in result.stderr, result.output


def test_shards_by_option_resume_and_end_complete(tmp_path):
    write_images(tmp_path / "imgs", 9)
    write_broken_images(tmp_path / "imgs")
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "one", *TINY, "--max-error-rate", "1").exit_code == 0
    single = read_embeddings(tmp_path / "one")
    sharded = tmp_path / "sharded"
    # shard 2 first (order must not matter), then shard 1, then shard 2 again: it resumes with nothing left
    for index, status in ((1, "partial"), (0, "complete"), (1, "complete")):
        result = extract_cli(tmp_path / "imgs", "-o", sharded, *TINY, "--max-error-rate", "1", "--part-size", "3",
                             "--num-shards", "2", "--shard-index", index)
        assert result.exit_code == 0, result.output
        assert load_manifest(sharded)["status"] == status
    assert "resumed" in result.output and "shard 2/2; dataset complete" in result.output
    assert_same_embeddings(read_embeddings(sharded), single)
    names = sorted(p.name for p in sharded.glob("part-*.parquet"))
    assert names[0].startswith("part-s00000of00002-") and names[-1].startswith("part-s00001of00002-")
    assert sorted(e["id"] for e in read_errors(sharded)) == sorted(e["id"] for e in read_errors(tmp_path / "one"))
    assert len(list((sharded / "_errors").glob("part-s*.csv"))) >= 2  # per-shard error files
    manifest = load_manifest(sharded)
    assert manifest["counts"] == load_manifest(tmp_path / "one")["counts"]
    assert "num_shards" not in manifest["settings"]



def test_unsharded_cleanup_leaves_a_running_shards_temp_files_alone(tmp_path):
    from pipelines.extract.writer import scan_committed

    (tmp_path / "_errors").mkdir()
    own = [tmp_path / ".part-00003.parquet.tmp", tmp_path / "_errors" / ".part-00003.csv.tmp"]
    shard = [tmp_path / ".part-s00001of00002-00003.parquet.tmp", tmp_path / "_errors" / ".part-s00001of00002-00003.csv.tmp"]
    for path in own + shard:
        path.write_text("half-written")
    scan_committed(tmp_path, "part-")
    assert [p.exists() for p in own + shard] == [False, False, True, True]


def test_errors_csv_lists_only_committed_parts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.extract.writer import merge_error_parts, scan_committed, write_error_csv

    (tmp_path / "_errors").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "part-00000.parquet")
    write_error_csv(tmp_path / "_errors" / "part-00000.csv", [{"id": "b", "path": "b.jpg", "error": "broken"}])
    # a shard mid-commit: its errors file is written, its part not yet
    write_error_csv(tmp_path / "_errors" / "part-s00001of00002-00000.csv", [{"id": "c", "path": "c.jpg", "error": "broken"}])
    state = scan_committed(tmp_path, None)
    merged = merge_error_parts(tmp_path, state.error_records)
    assert state.errors == 1 and [e["id"] for e in read_errors(tmp_path)] == ["b"] and merged is not None


def test_scan_ignores_a_part_another_shard_commits_while_it_runs(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.extract import writer
    from pipelines.extract.writer import scan_committed, write_error_csv

    (tmp_path / "_errors").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "part-s00000of00002-00000.parquet")
    write_error_csv(tmp_path / "_errors" / "part-s00000of00002-00000.csv", [{"id": "b", "path": "b.jpg", "error": "broken"}])
    late = "part-s00001of00002-00000"
    write_error_csv(tmp_path / "_errors" / f"{late}.csv", [{"id": "c", "path": "c.jpg", "error": "broken"}])
    read_table = writer.pq.read_table

    def commit_during_scan(path, **kwargs):  # shard 2 commits its part after the scan listed the parts
        if not (tmp_path / f"{late}.parquet").exists():
            pq.write_table(pa.table({"id": ["d"]}), tmp_path / f"{late}.parquet")
        return read_table(path, **kwargs)

    monkeypatch.setattr(writer.pq, "read_table", commit_during_scan)
    state = scan_committed(tmp_path, "part-s00000of00002-")
    assert (tmp_path / f"{late}.parquet").exists()  # the race happened
    assert state.ids == {"a", "b"} and state.errors == 1  # a consistent snapshot without the late part
    assert (tmp_path / "_errors" / f"{late}.csv").exists()  # not this shard's to delete

@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    write_images(tmp_path / "imgs", 11)
    write_broken_images(tmp_path / "imgs")
    args = ["extract", str(tmp_path / "imgs"), *TINY, "--max-error-rate", "1", "--part-size", "4"]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "one")]).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "cli", *args, "-o", str(tmp_path / "two")]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dataset complete" in done.stdout  # after the barrier every rank sees all shards
    two, one = read_embeddings(tmp_path / "two"), read_embeddings(tmp_path / "one")
    assert_same_embeddings(two, one)
    assert two.manifest["status"] == "complete" and two.manifest["counts"] == one.manifest["counts"]
    assert {p.name[:19] for p in (tmp_path / "two").glob("part-*.parquet")} == {"part-s00000of00002-", "part-s00001of00002-"}
    assert sorted(e["id"] for e in read_errors(tmp_path / "two")) == sorted(e["id"] for e in read_errors(tmp_path / "one"))


def test_out_of_memory_halves_the_batch_and_keeps_every_id_once(tmp_path, monkeypatch):
    import torch

    import pipelines.backbones as backbones

    write_images(tmp_path / "imgs", 40)
    plain = read_embeddings(run_extraction(ExtractConfig(
        inputs=str(tmp_path / "imgs"), output=str(tmp_path / "plain"), backbone="test_resnet", weights="random",
        workers=0, device="cpu", batch_size=16)).output)

    real_load = backbones.load_backbone
    seen = []

    def load_small_gpu(name, weights):
        backbone = real_load(name, weights)
        real_embed = backbone.embed

        def embed(batch):
            seen.append(len(batch))
            if len(batch) > 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return real_embed(batch)

        backbone.embed = embed
        return backbone

    monkeypatch.setattr(backbones, "load_backbone", load_small_gpu)
    summary = run_extraction(ExtractConfig(
        inputs=str(tmp_path / "imgs"), output=str(tmp_path / "oom"), backbone="test_resnet", weights="random",
        workers=0, device="cpu", batch_size=16))
    # batches of 16, 16, 8: halved twice on the first, then every chunk at the size that fitted
    assert seen == [16, 8] + [4] * 10, seen
    oom = read_embeddings(summary.output)
    assert len(oom.ids) == len(set(oom.ids)) == 40
    assert_same_embeddings(oom, plain)


def test_gpu_only_options_fall_back_on_cpu_with_a_warning(tmp_path):
    write_images(tmp_path / "imgs", 6)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "plain", *TINY).exit_code == 0
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "fast", *TINY[:-2], "--batch-size", "auto",
                         "--compile", "--decode", "gpu")
    assert result.exit_code == 0, result.output
    assert "--compile needs a CUDA device" in result.stderr and "--decode gpu needs a CUDA device" in result.stderr
    assert_same_embeddings(read_embeddings(tmp_path / "fast"), read_embeddings(tmp_path / "plain"))
    compute = load_manifest(tmp_path / "fast")["compute"]
    assert compute["decode"] == "cpu" and compute["batch_size"] == 8  # auto on a CPU: the CPU default


def test_device_jpeg_resize_crop_matches_the_cpu_transform(tmp_path):
    """The GPU decode path's geometry, run on the CPU: same crop as timm's PIL transform, pixels close."""
    import torch
    from PIL import Image

    from pipelines.backbones import load_backbone
    from pipelines.devtools.bench import write_photo_like_jpegs
    from pipelines.extract.readers.gpu_decode import DeviceJpegDecoder
    from pipelines.data.inputs import list_inputs
    from pipelines.extract.readers.image import ImageReader, collate, jpeg_views

    write_photo_like_jpegs(tmp_path / "photos", 3, size=(300, 200))
    Image.open(tmp_path / "photos" / "photo-00000.jpg").convert("L").save(tmp_path / "photos" / "grey.jpg", quality=95)
    items = list_inputs(tmp_path / "photos")
    config = load_backbone("resnet18", "random").data_config
    reader = ImageReader(items, config, 10**9)
    decoder = DeviceJpegDecoder(config, torch.device("cpu"), 10**9)
    # what a worker hands over with --decode gpu: every JPEG undecoded, in one byte buffer
    batch = collate([ImageReader(items, config, 10**9, jpeg_bytes=True)[index] for index in range(len(items))])
    assert batch["images"] is None and batch["jpeg_ids"] == [i.id for i in items]
    ids, images, errors = decoder(batch["jpeg_ids"], batch["jpeg_paths"], jpeg_views(batch))
    assert not errors and ids == [i.id for i in items]
    expected = torch.stack([reader[index]["image"] for index in range(len(items))])
    assert images.shape == expected.shape and images.dtype == torch.uint8
    difference = (images.float() - expected.float()).abs()
    assert difference.mean() < 2.0, difference.mean()  # another decoder/resampler: close, not equal
