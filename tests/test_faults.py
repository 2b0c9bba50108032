"""Fault script (issue 11, "Done means" 2): kill -9 at many points of extract (images, audio),
train-head, predict and run, plus a full disk, then re-run and check the outputs.

Run with `make faults` (OLYMP_FAULTS=1 pytest -m faults -s tests/test_faults.py): it takes
minutes, so the default test run skips it. Each killed command is a subprocess started through
FAULT_RUNNER, which kills itself with SIGKILL at a named point (OLYMP_FAULT_POINT):

    replace:GLOB:N[:before|after]   the N-th atomic rename onto a file named GLOB (temp written, not renamed)
    open:GLOB:N                     right after the N-th open for writing of a file named GLOB
    unlink:GLOB:N                   right after the N-th deletion of a file named GLOB

or is killed from outside after a random delay. Every extract case then re-runs (in process) to
completion and checks every id exactly once (rows + error records), the same error ids, and
embeddings allclose to an uninterrupted run. The counts are printed at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import load_manifest, read_embeddings, read_errors
from tests.audio_files import tone
from tests.image_files import write_broken_images, write_images

pytestmark = [
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.skipif(not os.environ.get("OLYMP_FAULTS"), reason="fault script: run `make faults` (minutes)"),
]

REPO = Path(__file__).resolve().parents[1]
IMAGE_ARGS = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu",
              "--precision", "fp32", "--batch-size", "2", "--part-size", "4", "--max-error-rate", "1"]
AUDIO_ARGS = ["--backbone", "logmel-stats", "--workers", "0", "--device", "cpu", "--batch-size", "2",
              "--part-size", "2", "--max-error-rate", "1"]
COUNTS = {"kills": 0, "not_killed": 0, "resumes": 0, "ids_checked": 0, "cases": 0, "full_disk": 0}
runner = CliRunner()

FAULT_RUNNER = r"""
import builtins, fnmatch, io, os, signal, sys
from pathlib import Path

point = os.environ.get("OLYMP_FAULT_POINT", "")
if point:
    kind, pattern, nth, *when = point.split(":")
    nth, when, seen = int(nth), (when[0] if when else "before"), [0]

    def hit(name):
        if fnmatch.fnmatch(Path(os.fspath(name)).name, pattern):
            seen[0] += 1
            return seen[0] == nth
        return False

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "replace":
        real_replace = os.replace
        def replace(src, dst, *args, **kwargs):
            fire = hit(dst)
            if fire and when == "before":
                die()
            real_replace(src, dst, *args, **kwargs)
            if fire:
                die()
        os.replace = replace
    elif kind == "open":
        real_open = builtins.open
        def opener(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and hit(file):
                handle.flush()
                die()
            return handle
        builtins.open = io.open = opener
    elif kind == "unlink":
        real_unlink = os.unlink
        def unlink(path, *args, **kwargs):
            real_unlink(path, *args, **kwargs)
            if hit(path):
                die()
        os.unlink = unlink
    else:
        raise SystemExit(f"unknown fault point {point}")

from cli.app import app
app(sys.argv[1:], prog_name="olymp")
"""


def olymp(*args, point: str | None = None, delay: float | None = None, timeout: float = 300) -> bool:
    """Run `olymp ARGS` in a subprocess killed at `point` or after `delay` s; True when it was killed.
    Without either, an uninterrupted (timing) run, not counted."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OLYMP_FAULT_POINT": point or ""}
    process = subprocess.Popen([sys.executable, "-c", FAULT_RUNNER, *map(str, args)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if delay is not None:
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    killed = process.returncode == -signal.SIGKILL
    if point or delay is not None:
        COUNTS["kills" if killed else "not_killed"] += 1  # not killed: it finished before the point/delay
    if not killed and process.returncode != 0:
        raise AssertionError(f"olymp {' '.join(map(str, args))} failed (rc {process.returncode}): {stderr.decode()[-2000:]}")
    return killed


def invoke(*args, code: int | None = 0):
    result = runner.invoke(app, [str(a) for a in args])
    if code is not None:
        assert result.exit_code == code, result.output
    return result


def resume(*args) -> None:
    COUNTS["resumes"] += 1
    invoke(*args)


def check_dataset(out: Path, reference: Path) -> None:
    """Every id exactly once, the same ids and errors as the uninterrupted run, vectors allclose."""
    got, want = read_embeddings(out), read_embeddings(reference)
    got_errors = sorted(row["id"] for row in read_errors(out))
    ids = list(got.ids) + got_errors
    assert len(ids) == len(set(ids)), f"duplicate ids in {out}"
    assert sorted(got.ids) == sorted(want.ids)
    assert got_errors == sorted(row["id"] for row in read_errors(reference))
    order_got, order_want = np.argsort(got.ids), np.argsort(want.ids)
    np.testing.assert_allclose(got.vectors[order_got], want.vectors[order_want], rtol=1e-4, atol=1e-5)
    assert load_manifest(out)["status"] == "complete"
    COUNTS["ids_checked"] += len(ids)


# ---------------------------------------------------------------- data

@pytest.fixture(scope="module")
def image_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fault-images")
    write_images(root / "imgs", 30)
    write_broken_images(root / "imgs")
    reference = root / "reference"
    invoke("extract", root / "imgs", "-o", reference, *IMAGE_ARGS)
    return root / "imgs", reference


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fault-audio")
    clips = root / "clips"
    clips.mkdir()
    for index in range(10):
        fmt = ("wav", "flac", "ogg")[index % 3]
        soundfile.write(clips / f"clip-{index:02d}.{fmt}", tone(1.0 + index * 0.3, 16000, 200.0 + 40 * index, index), 16000)
    (clips / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    reference = root / "reference"
    invoke("extract", clips, "-o", reference, *AUDIO_ARGS)
    return clips, reference


# ---------------------------------------------------------------- extract

EXTRACT_POINTS = [
    "open:._manifest.json.tmp:1",  # the first manifest half-written: only the temp file exists
    "replace:_manifest.json:1:before",  # the first manifest written, not yet renamed
    "replace:_manifest.json:1:after",
    "replace:part-*.parquet:1:before",  # during a part commit
    "replace:part-*.parquet:3:before",
    "replace:part-*.parquet:2:after",
    "replace:part-*.csv:1:after",  # a part's error records committed, the part not yet
    "open:_extract.lock:1",  # the lock file just created, not yet locked
    "replace:_manifest.json:2:before",  # the closing manifest update
]


@pytest.mark.parametrize("point", EXTRACT_POINTS)
def test_extract_images_killed_at_a_point(tmp_path, image_data, point):
    inputs, reference = image_data
    out = tmp_path / "out"
    olymp("extract", inputs, "-o", out, *IMAGE_ARGS, point=point)
    resume("extract", inputs, "-o", out, *IMAGE_ARGS)
    check_dataset(out, reference)
    COUNTS["cases"] += 1


@pytest.mark.parametrize("point", ["open:._manifest.json.tmp:1", "replace:part-*.parquet:2:before",
                                   "replace:part-*.csv:1:after", "replace:_manifest.json:2:before"])
def test_extract_audio_killed_at_a_point(tmp_path, audio_data, point):
    inputs, reference = audio_data
    out = tmp_path / "out"
    olymp("extract", inputs, "-o", out, *AUDIO_ARGS, point=point)
    resume("extract", inputs, "-o", out, *AUDIO_ARGS)
    check_dataset(out, reference)
    COUNTS["cases"] += 1


@pytest.mark.parametrize("seed", range(4))
def test_extract_killed_after_random_delays_twice(tmp_path, image_data, audio_data, seed):
    """Two kills at random moments (the second one while resuming), then a resume to completion."""
    rng = random.Random(seed)
    inputs, reference = image_data if seed % 2 == 0 else audio_data
    args = IMAGE_ARGS if seed % 2 == 0 else AUDIO_ARGS
    out = tmp_path / "out"
    started = time.monotonic()
    olymp("extract", inputs, "-o", out, *args)
    whole = time.monotonic() - started
    shutil.rmtree(out)
    for _ in range(2):
        olymp("extract", inputs, "-o", out, *args, delay=rng.uniform(0.3, 1.0) * whole)
    resume("extract", inputs, "-o", out, *args)
    check_dataset(out, reference)
    COUNTS["cases"] += 1


@pytest.mark.parametrize("point", ["replace:part-*.parquet:1:before", "replace:part-*.parquet:2:after",
                                   "unlink:part-*.parquet:1"])
def test_resume_of_changed_files_killed_while_dropping_old_rows(tmp_path, image_data, point):
    """a/ embedded, then the files replaced by others under the same names: kill while the
    superseded rows are dropped (parts rewritten / deleted) or while re-embedding."""
    inputs, _ = image_data
    first = tmp_path / "first"
    write_images(first, 30, seed=7)
    out = tmp_path / "out"
    invoke("extract", first, "-o", out, *IMAGE_ARGS)
    shutil.rmtree(first)
    shutil.copytree(inputs, first)  # same names, the fixture's content (+ its broken files)
    reference = tmp_path / "reference"
    invoke("extract", first, "-o", reference, *IMAGE_ARGS)
    olymp("extract", first, "-o", out, *IMAGE_ARGS, point=point)
    resume("extract", first, "-o", out, *IMAGE_ARGS)
    check_dataset(out, reference)
    COUNTS["cases"] += 1


@pytest.mark.parametrize("point", ["unlink:part-*.parquet:2", "unlink:_manifest.json:1"])
def test_overwrite_killed_mid_replacement(tmp_path, image_data, point):
    inputs, reference = image_data
    out = tmp_path / "out"
    other = ["--backbone", "test_efficientnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
    invoke("extract", inputs, "-o", out, *other)
    olymp("extract", inputs, "-o", out, *IMAGE_ARGS, "--overwrite", point=point)
    resume("extract", inputs, "-o", out, *IMAGE_ARGS, "--overwrite")
    check_dataset(out, reference)
    COUNTS["cases"] += 1


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def test_full_disk_then_space_freed_resumes(tmp_path, image_data):
    inputs, reference = image_data
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("mount -t tmpfs is not allowed here")
    try:
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * max(0, free - 24 * 1024))  # room for the manifest and a few parts
        out = disk / "out"
        result = invoke("extract", inputs, "-o", out, *IMAGE_ARGS, code=None)
        assert result.exit_code != 0, "the disk never filled up: shrink the free space"
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        filler.unlink()
        resume("extract", inputs, "-o", out, *IMAGE_ARGS)
        check_dataset(out, reference)
        COUNTS["full_disk"] += 1
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # busy: detach it anyway


# ---------------------------------------------------------------- train-head, predict, run

@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_data) -> dict:
    inputs, reference = image_data
    root = tmp_path_factory.mktemp("fault-heads")
    ids = sorted(read_embeddings(reference).ids)
    pd.DataFrame({"id": ids, "label": [f"c{i % 3}" for i in range(len(ids))]}).to_csv(root / "labels.csv", index=False)
    run = root / "run"
    train = ["train-head", reference, "--labels", root / "labels.csv", "--head", "logreg", "--folds", "2"]
    invoke(*train, "-o", run)
    submission = root / "submission.csv"
    invoke("predict", run, reference, "-o", submission)
    return {"root": root, "train": train, "run": run, "embeddings": reference, "submission": submission}


@pytest.mark.parametrize("point", ["open:*manifest.json*:1", "open:*oof.csv*:1", "open:*fold-1*:1",
                                   "delay:0.5", "delay:0.8"])
def test_train_head_killed_then_rerun_without_overwrite(tmp_path, trained, point):
    """GLOBs match the final name and its `.NAME.tmp` temp file alike (atomic writes or not)."""
    out = tmp_path / "run"
    kind, _, value = point.partition(":")
    if kind == "delay":
        started = time.monotonic()
        olymp(*trained["train"], "-o", tmp_path / "timing")
        killed = olymp(*trained["train"], "-o", out, delay=float(value) * (time.monotonic() - started))
    else:
        killed = olymp(*trained["train"], "-o", out, point=point)
    if killed:
        resume(*trained["train"], "-o", out)  # a killed train-head resumes without --overwrite
    else:  # it finished first: a complete run is refused without --overwrite
        assert "--overwrite" in invoke(*trained["train"], "-o", out, code=1).stderr
    invoke("predict", out, trained["embeddings"], "-o", tmp_path / "submission.csv")
    COUNTS["cases"] += 1


@pytest.mark.parametrize("point", ["open:*submission.csv*:1", "delay:0.6", "delay:0.9"])
def test_predict_killed_never_leaves_an_empty_submission(tmp_path, trained, point):
    good = trained["submission"].read_bytes()
    target = tmp_path / "submission.csv"
    target.write_bytes(good)
    args = ["predict", trained["run"], trained["embeddings"], "-o", target]
    kind, _, value = point.partition(":")
    if kind == "delay":
        started = time.monotonic()
        olymp(*args[:-1], tmp_path / "timing.csv")
        olymp(*args, delay=float(value) * (time.monotonic() - started))
    else:
        olymp(*args, point=point)
    assert target.read_bytes() == good  # the old submission, whole (the new one is the same)
    resume(*args)
    assert target.read_bytes() == good
    COUNTS["cases"] += 1


RUN_CONFIG = """
[data]
train = "{train}"
test = "{test}"
labels = "{labels}"
output = "{output}"

[extract]
backbone = "test_resnet"
weights = "random"
device = "cpu"
workers = 0
precision = "fp32"
batch_size = 2
part_size = 4

[head]
name = "logreg"
folds = 2
"""


@pytest.mark.parametrize("point", ["open:steps.json:1", "replace:part-*.parquet:3:before", "delay:0.5", "delay:0.8"])
def test_run_killed_then_rerun_completes(tmp_path, image_data, trained, point):
    inputs, reference = image_data
    config = tmp_path / "run.toml"
    config.write_text(RUN_CONFIG.format(train=inputs, test=inputs, labels=trained["root"] / "labels.csv",
                                        output=tmp_path / "out"))
    kind, _, value = point.partition(":")
    if kind == "delay":
        timing = tmp_path / "timing.toml"
        timing.write_text(config.read_text().replace(str(tmp_path / "out"), str(tmp_path / "timing")))
        started = time.monotonic()
        olymp("run", timing)
        olymp("run", config, delay=float(value) * (time.monotonic() - started))
    else:
        olymp("run", config, point=point)
    resume("run", config)
    for split in ("train", "test"):
        check_dataset(tmp_path / "out" / "emb" / split, reference)
    submission = pd.read_csv(tmp_path / "out" / "submission.csv", dtype=str)
    assert len(submission) == len(read_embeddings(reference).ids) + len(read_errors(reference))
    COUNTS["cases"] += 1


def test_zz_counts():
    """Printed last (pytest runs a module's tests in order): how much the script exercised."""
    print("\nfault script:", json.dumps(COUNTS))
    assert COUNTS["kills"] >= 1
