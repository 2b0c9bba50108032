"""`olymp extract` through the CLI and the library: schema, resume, bad input, refusals."""

from __future__ import annotations

import platform
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import fingerprint, read_embeddings, read_errors
from pipelines.core.errors import TooManyErrors
from pipelines.extract.config import ExtractConfig
from pipelines.extract.readers.image import load_rgb
from pipelines.extract.runner import run_extraction
from tests.image_files import write_broken_images, write_images, write_odd_but_valid_images

REPO = Path(__file__).resolve().parents[1]
# CPU everywhere but in test_gpu.py: bf16 on a GPU would need other tolerances.
TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
runner = CliRunner()


def extract_cli(*args: str):
    return runner.invoke(app, ["extract", *map(str, args)])


def tiny_config(inputs, output, **overrides) -> ExtractConfig:
    settings = dict(backbone="test_resnet", weights="random", workers=0, batch_size=4, device="cpu")
    settings.update(overrides)
    return ExtractConfig(inputs=str(inputs), output=str(output), **settings)


def test_folder_to_parquet_dataset(tmp_path):
    write_images(tmp_path / "train" / "cats", 3, prefix="c")
    write_images(tmp_path / "train" / "dogs", 4, prefix="d")
    result = extract_cli(tmp_path / "train", "-o", tmp_path / "emb", *TINY, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "embedded" in result.stdout and "7 of 7" in result.stdout

    frame = pd.read_parquet(tmp_path / "emb")  # the directory itself is the dataset
    assert sorted(frame["id"]) == [f"cats/c-{i:03d}" for i in range(3)] + [f"dogs/d-{i:03d}" for i in range(4)]
    schema = pq.read_schema(next((tmp_path / "emb").glob("part-*.parquet")))
    assert str(schema.field("id").type) == "string"
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[96]"
    producer = json.loads(schema.metadata[b"olymp"])
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert producer == fingerprint(manifest)
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"inputs": 7, "embedded": 7, "errors": 0}
    assert manifest["embedding_dim"] == 96 and manifest["timm_name"] == "test_resnet"
    assert manifest["preprocessing"]["input_size"] == [3, 160, 160]
    assert {"olymp", "torch", "timm"} <= set(manifest["versions"])
    assert not (tmp_path / "emb" / "_errors.csv").exists()


def test_listing_csv_with_relative_paths_and_ids(tmp_path):
    files = write_images(tmp_path / "raw", 3)
    listing = tmp_path / "train.csv"
    pd.DataFrame({"id": ["007", "b", "a"], "path": [f"raw/{p.name}" for p in files]}).to_csv(listing, index=False)
    result = extract_cli(listing, "-o", tmp_path / "emb", *TINY)
    assert result.exit_code == 0, result.output
    embeddings = read_embeddings(tmp_path / "emb")
    assert list(embeddings.ids) == ["007", "a", "b"]  # "007" stays a string, rows sorted by id


def test_same_image_same_embedding_whatever_the_batch(tmp_path):
    write_images(tmp_path / "imgs", 5)
    one = read_embeddings(run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "b1", batch_size=1)).output)
    four = read_embeddings(run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "b4", batch_size=4)).output)
    assert list(one.ids) == list(four.ids)
    np.testing.assert_allclose(one.vectors, four.vectors, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(one.vectors[0] - one.vectors[1]) > 1e-3  # different images, different vectors


def test_every_image_mode_is_embedded(tmp_path):
    paths = write_odd_but_valid_images(tmp_path / "odd")
    summary = run_extraction(tiny_config(tmp_path / "odd", tmp_path / "emb"))
    assert (summary.embedded, summary.errors) == (len(paths), 0)
    deep = np.asarray(load_rgb(str(paths["png16"]), max_pixels=10**8))
    assert deep.dtype == np.uint8 and deep.std() > 20  # rescaled, not clipped to white
    rgba = np.asarray(load_rgb(str(paths["rgba"]), max_pixels=10**8))
    assert rgba.shape[-1] == 3


def test_broken_files_are_recorded_and_skipped(tmp_path):
    write_images(tmp_path / "mixed", 6)
    broken = write_broken_images(tmp_path / "mixed")
    result = extract_cli(tmp_path / "mixed", "-o", tmp_path / "emb", *TINY, "--max-error-rate", "0.9")
    assert result.exit_code == 0, result.output
    embeddings = read_embeddings(tmp_path / "emb")
    assert len(embeddings.ids) == 6
    errors = {row["id"]: row for row in read_errors(tmp_path / "emb")}
    assert set(errors) == {p.stem for p in broken.values()}
    assert "truncated" in errors["truncated"]["error"]
    assert "not a readable image" in errors["notes"]["error"]
    assert errors["empty"]["path"] == str(broken["empty"].resolve())
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["counts"] == {"inputs": 10, "embedded": 6, "errors": 4}
    assert "_errors.csv" in result.stdout


def test_huge_image_is_recorded_not_decoded(tmp_path):
    write_images(tmp_path / "imgs", 3, size=(40, 40))
    write_images(tmp_path / "imgs", 1, size=(400, 300), prefix="huge")
    summary = run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "emb", max_image_pixels=50_000, max_error_rate=1.0))
    (error,) = read_errors(summary.output)
    assert error["id"] == "huge-000" and "too large" in error["error"]
    assert summary.embedded == 3


def test_mostly_bad_input_stops_with_the_fix_named(tmp_path):
    write_images(tmp_path / "bad", 1)
    write_broken_images(tmp_path / "bad")
    result = extract_cli(tmp_path / "bad", "-o", tmp_path / "emb", *TINY)
    assert result.exit_code == 1
    assert "--max-error-rate" in result.stderr and "4 of 5" in result.stderr
    assert len(read_errors(tmp_path / "emb")) == 4  # what was learnt is kept
    with pytest.raises(TooManyErrors):
        run_extraction(tiny_config(tmp_path / "bad", tmp_path / "emb2", max_error_rate=0.5))


def test_resume_after_ctrl_c_gives_every_id_once(tmp_path):
    write_images(tmp_path / "imgs", 22)
    config = tiny_config(tmp_path / "imgs", tmp_path / "emb", batch_size=2, part_size=4)
    seen = []

    def interrupt_after_five_batches(event):
        seen.append(event.stage)
        if seen.count("batch") == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_extraction(config, on_progress=interrupt_after_five_batches)
    partial = read_embeddings(tmp_path / "emb")
    assert len(partial.ids) == 10  # the buffered half-part was committed on the way out
    assert json.loads((tmp_path / "emb" / "_manifest.json").read_text())["status"] == "partial"

    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, "--batch-size", "2", "--part-size", "4")
    assert result.exit_code == 0, result.output
    assert "10 inputs already done" in result.stderr
    final = read_embeddings(tmp_path / "emb")
    assert sorted(final.ids) == sorted(f"img-{i:03d}" for i in range(22))
    assert len(set(final.ids)) == 22
    fresh = read_embeddings(run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "fresh")).output)
    order = np.argsort(final.ids)
    np.testing.assert_allclose(final.vectors[order], fresh.vectors, rtol=1e-4, atol=1e-5)


KILL_SCRIPT = """
import os, signal, sys
from pipelines.extract.config import ExtractConfig
from pipelines.extract.runner import run_extraction
batches = []
def die_mid_run(event):
    if event.stage == "batch":
        batches.append(1)
        if len(batches) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
run_extraction(ExtractConfig(inputs=sys.argv[1], output=sys.argv[2], backbone="test_resnet", weights="random",
                             workers=0, batch_size=2, part_size=4, device="cpu"), on_progress=die_mid_run)
"""


@pytest.mark.slow
def test_resume_after_kill_minus_nine(tmp_path):
    write_images(tmp_path / "imgs", 20)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "imgs"), str(tmp_path / "emb")], cwd=REPO, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert len(read_embeddings(tmp_path / "emb").ids) == 8  # two committed parts survive
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY)
    assert result.exit_code == 0, result.output
    ids = list(read_embeddings(tmp_path / "emb").ids)
    assert sorted(ids) == [f"img-{i:03d}" for i in range(20)]


def test_other_backbone_into_same_output_is_refused(tmp_path):
    write_images(tmp_path / "imgs", 3)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY).exit_code == 0
    other = ["--backbone", "test_efficientnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *other)
    assert result.exit_code == 1
    assert "test_resnet" in result.stderr and "test_efficientnet" in result.stderr and "--overwrite" in result.stderr
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *other, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "emb" / "_manifest.json").read_text())["backbone"] == "test_efficientnet"


@pytest.mark.parametrize(
    "make_args, expected_error",
    [
        (lambda p: [p / "imgs", "-o", p / "notes"], "not an olymp embedding directory"),
        (lambda p: [p / "imgs", "-o", p / "e", "--backbone", "resnet_51"], "resnet"),
        (lambda p: [p / "empty_dir", "-o", p / "e"], "no input files found"),
        (lambda p: [p / "listing.csv", "-o", p / "e"], "no `path` column"),
    ],
)
def test_bad_invocations_name_the_fix(tmp_path, make_args, expected_error):
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "listing.csv").write_text("id,file\na,x.jpg\n")
    result = extract_cli(*make_args(tmp_path), "--workers", "0", "--device", "cpu")
    assert result.exit_code == 1
    assert expected_error in result.stderr
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    write_images(tmp_path / "imgs", 1)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY[:-2], "--device", "cuda")
    assert result.exit_code == 1 and "--device cpu" in result.stderr


MEMORY_SCRIPT = """
import resource, sys, torch
import pipelines.backbones as backbones
from pipelines.extract.config import ExtractConfig
from pipelines.extract.runner import run_extraction

class WideBackbone:  # 40 000-d embeddings: collecting them all would show in the peak
    name = timm_name = "wide"
    weights_source = "random init"
    weights_sha256 = None
    embedding_dim = 40_000
    data_config = {"input_size": (3, 32, 32), "interpolation": "bilinear", "mean": (0.5,) * 3,
                   "std": (0.5,) * 3, "crop_pct": 1.0, "crop_mode": "center"}
    model = torch.nn.Linear(3, 40_000)
    def embed(self, images):
        return self.model(images.mean(dim=(2, 3)))

backbones.load_backbone = lambda name, weights=None: WideBackbone()
run_extraction(ExtractConfig(inputs=sys.argv[1], output=sys.argv[2], workers=0, batch_size=8, part_size=16,
                             device="cpu"))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_inputs(tmp_path):
    def peak_kib(count: int) -> int:
        write_images(tmp_path / f"in{count}", count, size=(32, 32))
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / f"in{count}"), str(tmp_path / f"out{count}")],
            cwd=REPO, capture_output=True, text=True, check=True,
        )
        return int(done.stdout.split()[-1])

    small, large = peak_kib(40), peak_kib(400)
    # 360 more rows of 160 kB each would add ~58 MB if they were collected; streaming adds ~none.
    assert large - small < 20_000, (small, large)


def test_precision_auto_follows_the_hardware_and_stays_close_to_fp32(tmp_path):
    import torch

    from pipelines.core.errors import ConfigError
    from pipelines.core.device import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    write_images(tmp_path / "imgs", 4)
    runs = {}
    for precision in ("fp32", "bf16"):
        summary = run_extraction(tiny_config(tmp_path / "imgs", tmp_path / precision, precision=precision))
        runs[precision] = read_embeddings(summary.output)
        compute = runs[precision].manifest["compute"]
        assert (compute["device"], compute["precision"]) == ("cpu", precision)
    a, b = runs["fp32"].vectors, runs["bf16"].vectors
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99


def test_decode_workers_give_the_same_rows(tmp_path):
    write_images(tmp_path / "imgs", 9)
    write_broken_images(tmp_path / "imgs")
    inline = read_embeddings(run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "w0", max_error_rate=1.0)).output)
    summary = run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "w2", workers=2, max_error_rate=1.0))
    parallel = read_embeddings(summary.output)
    assert list(parallel.ids) == list(inline.ids) and summary.errors == 4
    np.testing.assert_allclose(parallel.vectors, inline.vectors, rtol=1e-4, atol=1e-5)


def test_manifest_and_json_record_seconds_per_stage(tmp_path):
    write_images(tmp_path / "imgs", 5)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "emb", *TINY, "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.output
    timings = json.loads(result.stdout)["timings"]
    manifest = json.loads((tmp_path / "emb" / "_manifest.json").read_text())
    assert manifest["timings"] == timings
    assert set(timings) == {"read_s", "forward_s", "write_s", "seconds"}
    assert timings["forward_s"] > 0 and timings["write_s"] > 0 and timings["read_s"] > 0
    # the stages run one after the other on CPU (no prefetch thread): their sum fits in the wall clock
    assert timings["read_s"] + timings["forward_s"] + timings["write_s"] <= timings["seconds"] + 0.01


def test_runner_takes_its_stage_and_writer_as_arguments(tmp_path):
    """The runner only wires stages: a stage builder of our own (constant vectors) and a writer
    that counts what it is given."""
    from pipelines.extract.stages import Stage
    from pipelines.extract.writer import PartWriter

    write_images(tmp_path / "imgs", 3)
    seen = []

    def build_stage(config, device):
        def rows(todo, workers):
            ids = [item.id for item in todo]
            yield ids, np.full((len(ids), 4), 7.0, dtype=np.float32), [], {}

        return Stage("image", "constant", "constant", "none", None, {"kind": "constant"}, 4, "fp32", 8, rows)

    class CountingWriter(PartWriter):
        def add(self, ids, *args, **kwargs):
            seen.extend(ids)
            return super().add(ids, *args, **kwargs)

    summary = run_extraction(tiny_config(tmp_path / "imgs", tmp_path / "emb"), build_stage=build_stage,
                             build_writer=CountingWriter)
    embeddings = read_embeddings(summary.output)
    assert summary.backbone == "constant" and sorted(seen) == sorted(embeddings.ids) and len(seen) == 3
    np.testing.assert_allclose(embeddings.vectors, 7.0)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_large_freed_blocks_are_kept_for_reuse():
    """extract and finetune raise glibc's mmap/trim thresholds (once per process), so large
    activation blocks are reused instead of unmapped and faulted in again at every layer."""
    import ctypes

    from pipelines.core import hardware

    assert hardware.keep_freed_memory() is True and hardware.keep_freed_memory() is True  # idempotent
    libc = ctypes.CDLL("libc.so.6")

    class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t counters
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    mapped_before = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)  # above glibc's default mmap ceiling (32 MB)
    mapped_with = libc.mallinfo2().hblks
    libc.free(block)
    assert mapped_with == mapped_before  # from the arena (kept for reuse), not a block of its own mapping
