"""Extraction outputs a contestant can trust (issue 11): content-keyed resume, precision in the
fingerprint, one writer per folder, crash-safe folders, and every bad input recorded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import fingerprint, load_manifest, read_embeddings, read_errors
from pipelines.core.errors import ConfigError
from pipelines.extract.config import ExtractConfig
from pipelines.extract.runner import run_extraction
from tests.audio_files import tone
from tests.image_files import write_images

REPO = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu",
        "--precision", "fp32"]
STATS = ["--backbone", "logmel-stats", "--workers", "0", "--device", "cpu"]
runner = CliRunner()


def extract_cli(*args):
    return runner.invoke(app, ["extract", *map(str, args)])


def ids_once(path) -> list[str]:
    ids = list(read_embeddings(path).ids) + [row["id"] for row in read_errors(path)]
    assert len(ids) == len(set(ids)), sorted(ids)
    return sorted(ids)


def vectors_by_id(path) -> dict:
    emb = read_embeddings(path)
    return dict(zip(emb.ids, emb.vectors))


def fresh(inputs, out, *extra):
    result = extract_cli(inputs, "-o", out, *TINY, *extra)
    assert result.exit_code == 0, result.output
    return vectors_by_id(out)


# ---------------------------------------------------------------- content-keyed resume

def test_same_names_other_content_is_re_embedded(tmp_path):
    write_images(tmp_path / "a", 5, seed=1)
    write_images(tmp_path / "b", 4, seed=2)  # img-000..003: same names, other pixels; img-004 gone
    assert extract_cli(tmp_path / "a", "-o", tmp_path / "out", *TINY).exit_code == 0
    result = extract_cli(tmp_path / "b", "-o", tmp_path / "out", *TINY)
    assert result.exit_code == 0, result.output
    assert "4 inputs changed" in result.stderr
    assert ids_once(tmp_path / "out") == [f"img-{i:03d}" for i in range(4)]  # img-004 no longer listed
    want = fresh(tmp_path / "b", tmp_path / "ref")
    got = vectors_by_id(tmp_path / "out")
    for key, vector in want.items():
        np.testing.assert_allclose(got[key], vector, rtol=1e-4, atol=1e-5)
    manifest = load_manifest(tmp_path / "out")
    assert manifest["counts"] == {"inputs": 4, "embedded": 4, "errors": 0}
    from pipelines.core.hashing import file_fingerprint

    stored = {}
    for part in (tmp_path / "out").glob("part-*.parquet"):
        table = pq.read_table(part, columns=["id", "file_fingerprint"])
        stored.update(zip(table.column("id").to_pylist(), table.column("file_fingerprint").to_pylist()))
    assert stored == {path.stem: file_fingerprint(path) for path in (tmp_path / "b").iterdir()}


def test_one_changed_file_is_the_only_one_embedded_again(tmp_path):
    files = write_images(tmp_path / "imgs", 6, seed=3)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--part-size", "2", "--batch-size", "2").exit_code == 0
    other = write_images(tmp_path / "other", 1, seed=9)[0]
    shutil.copyfile(other, files[2])  # same id, other content
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--part-size", "2", "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["processed"], summary["changed"], summary["resumed"]) == (1, 1, 5)
    assert ids_once(tmp_path / "out") == [f"img-{i:03d}" for i in range(6)]
    np.testing.assert_allclose(vectors_by_id(tmp_path / "out")["img-002"],
                               fresh(tmp_path / "imgs", tmp_path / "ref")["img-002"], rtol=1e-4, atol=1e-5)


def test_duplicate_ids_from_an_older_version_are_repaired(tmp_path):
    write_images(tmp_path / "imgs", 4)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY).exit_code == 0
    part = tmp_path / "out" / "part-00000.parquet"
    shutil.copyfile(part, tmp_path / "out" / "part-00001.parquet")  # what two concurrent writers left
    assert len(read_embeddings(tmp_path / "out").ids) == 8
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY)
    assert result.exit_code == 0, result.output
    assert ids_once(tmp_path / "out") == [f"img-{i:03d}" for i in range(4)]
    assert load_manifest(tmp_path / "out")["counts"]["embedded"] == 4


def test_fingerprint_covers_precision(tmp_path):
    base = {"modality": "image", "backbone": "b", "weights_sha256": "x", "preprocessing": {}, "embedding_dim": 4}
    assert fingerprint({**base, "precision": "fp16"}) != fingerprint({**base, "precision": "fp32"})
    assert fingerprint({**base, "compute": {"precision": "bf16"}})["precision"] == "bf16"  # older manifests
    write_images(tmp_path / "imgs", 2)
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY).exit_code == 0
    assert load_manifest(tmp_path / "out")["precision"] == "fp32"
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY[:-1], "bf16")
    assert result.exit_code == 1
    assert "precision: fp32 → bf16" in result.stderr and "--overwrite" in result.stderr


# ---------------------------------------------------------------- one writer per folder

def holder_record(pid: int, host: str | None = None) -> str:
    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "shards": 1, "started": "earlier"})


def test_a_live_writer_is_refused_with_its_pid(tmp_path):
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "out").mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "out" / "_extract.lock").write_text(holder_record(sleeper.pid))
        result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY)
        assert result.exit_code == 1
        assert f"pid {sleeper.pid}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not list((tmp_path / "out").glob("part-*"))
    finally:
        sleeper.kill()
        sleeper.wait()
    # its pid is dead now: the lock is stale and taken over
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY)
    assert result.exit_code == 0, result.output
    assert ids_once(tmp_path / "out") == ["img-000", "img-001"]
    assert (tmp_path / "out" / "_extract.lock").read_text() == ""  # released


HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipelines.extract.shards import Shard, writer_lock
with writer_lock(Path(sys.argv[1]), Shard(0, 1)):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    write_images(tmp_path / "imgs", 2)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "out")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY)
        assert result.exit_code == 1 and f"pid {holder.pid}" in result.stderr
        sharded = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--num-shards", "2", "--shard-index", "0")
        assert sharded.exit_code == 1 and "being written by" in sharded.stderr
    finally:
        holder.kill()  # kill -9: the kernel drops its flock
        holder.wait()
    assert extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY).exit_code == 0


def test_stale_lock_from_a_dead_pid_is_taken_over(tmp_path):
    write_images(tmp_path / "imgs", 2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_extract.lock").write_text(holder_record(dead.pid))
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY)
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- crash-safe folders

def test_kill_during_the_first_manifest_write_then_rerun_completes(tmp_path):
    write_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "._manifest.json.tmp").write_text('{"olymp_format": 1, "kind": "embe')  # all a kill -9 left
    result = extract_cli(tmp_path / "imgs", "-o", out, *TINY)
    assert result.exit_code == 0, result.output
    assert ids_once(out) == ["img-000", "img-001", "img-002"]
    assert load_manifest(out)["status"] == "complete"


def test_overwrite_on_a_temp_only_folder_works(tmp_path):
    write_images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "._manifest.json.tmp").write_text("")
    (out / "_extract.lock").write_text("")
    result = extract_cli(tmp_path / "imgs", "-o", out, *TINY, "--overwrite")
    assert result.exit_code == 0, result.output
    assert ids_once(out) == ["img-000", "img-001"]


def test_parts_without_a_manifest_resume_or_are_replaced(tmp_path):
    """What a kill mid-replacement (or mid-first-manifest) can leave: parts, no manifest."""
    write_images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    assert extract_cli(tmp_path / "imgs", "-o", out, *TINY, "--part-size", "2", "--batch-size", "2").exit_code == 0
    (out / "_manifest.json").unlink()
    (out / "part-00001.parquet").unlink()
    result = extract_cli(tmp_path / "imgs", "-o", out, *TINY, "--part-size", "2", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "2 inputs already done" in result.stderr
    assert ids_once(out) == [f"img-{i:03d}" for i in range(4)]
    (out / "_manifest.json").unlink()
    other = ["--backbone", "test_efficientnet", "--weights", "random", "--workers", "0", "--device", "cpu"]
    refused = extract_cli(tmp_path / "imgs", "-o", out, *other)
    assert refused.exit_code == 1 and "--overwrite" in refused.stderr
    replaced = extract_cli(tmp_path / "imgs", "-o", out, *other, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert load_manifest(out)["backbone"] == "test_efficientnet" and len(ids_once(out)) == 4


def test_overwrite_removes_parts_before_the_manifest(tmp_path, monkeypatch):
    from pipelines.extract import runner as runner_module

    write_images(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    assert extract_cli(tmp_path / "imgs", "-o", out, *TINY, "--part-size", "2", "--batch-size", "2").exit_code == 0
    removed = []
    real_unlink = Path.unlink

    def record(self, missing_ok=False):
        removed.append(self.name)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", record)
    runner_module.remove_dataset(out)
    assert removed.index("_manifest.json") > max(removed.index(n) for n in removed if n.startswith("part-"))


def test_a_folder_that_is_not_olymps_is_refused_untouched(tmp_path):
    write_images(tmp_path / "imgs", 2)
    out = tmp_path / "notes"
    out.mkdir()
    (out / "._manifest.json.tmp").write_text("")
    (out / "todo.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        result = extract_cli(tmp_path / "imgs", "-o", out, *TINY, *extra)
        assert result.exit_code == 1 and "not an olymp embedding directory" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["._manifest.json.tmp", "todo.txt"]


# ---------------------------------------------------------------- bad input recorded

def test_truncated_audio_is_recorded_not_embedded_from_its_first_third(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, subtype in (("ogg", "VORBIS"), ("wav", "PCM_16")):
        whole = clips / f"whole_{name}.{name}"
        soundfile.write(whole, tone(6.0, 16000), 16000, subtype=subtype)
        data = whole.read_bytes()
        (clips / f"cut_{name}.{name}").write_bytes(data[: len(data) // 3])
    result = extract_cli(clips, "-o", tmp_path / "out", *STATS, "--max-error-rate", "1")
    assert result.exit_code == 0, result.output
    errors = {row["id"]: row["error"] for row in read_errors(tmp_path / "out")}
    assert set(errors) == {"cut_ogg", "cut_wav"} and all("truncated audio" in e for e in errors.values())
    assert sorted(read_embeddings(tmp_path / "out").ids) == ["whole_ogg", "whole_wav"]


def test_fake_mp3_says_what_is_wrong(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    soundfile.write(clips / "good.wav", tone(1.0, 16000), 16000)
    (clips / "fake.mp3").write_text("this is not audio at all")
    result = extract_cli(clips, "-o", tmp_path / "out", *STATS, "--max-error-rate", "1")
    assert result.exit_code == 0, result.output
    (error,) = read_errors(tmp_path / "out")
    assert error["id"] == "fake" and "does not exist" not in error["error"]
    assert "not a readable audio file" in error["error"]


def test_nan_embedding_is_recorded_as_an_error(tmp_path, monkeypatch):
    from pipelines.extract.mappers import image as mapper

    real = mapper.Pending.result

    def overflow(self):
        vectors = real(self).copy()
        vectors[0, 0] = np.nan  # e.g. an fp16 overflow in the first image of each batch
        return vectors

    monkeypatch.setattr(mapper.Pending, "result", overflow)
    write_images(tmp_path / "imgs", 4)
    result = extract_cli(tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--batch-size", "2", "--max-error-rate", "1")
    assert result.exit_code == 0, result.output
    errors = {row["id"]: row["error"] for row in read_errors(tmp_path / "out")}
    assert set(errors) == {"img-000", "img-002"} and all("non-finite" in e for e in errors.values())
    embedded = read_embeddings(tmp_path / "out")
    assert sorted(embedded.ids) == ["img-001", "img-003"] and np.isfinite(embedded.vectors).all()


def test_failed_input_is_retried_once_on_resume(tmp_path, monkeypatch):
    from pipelines.extract.readers import image as reader

    write_images(tmp_path / "imgs", 3)
    real = reader.load_rgb

    def flaky(path, *args, **kwargs):
        if Path(path).stem == "img-001":
            raise OSError("Input/output error")  # a transient read failure
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reader, "load_rgb", flaky)
    args = [tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--max-error-rate", "1", "--json"]
    first = extract_cli(*args)
    assert first.exit_code == 0, first.output
    (error,) = read_errors(tmp_path / "out")
    assert error["id"] == "img-001" and error["attempts"] == "1"
    second = extract_cli(*args)  # still failing: tried once more, then it stands
    assert json.loads(second.stdout)["retried"] == 1
    (error,) = read_errors(tmp_path / "out")
    assert error["attempts"] == "2"
    third = extract_cli(*args)
    assert json.loads(third.stdout)["processed"] == 0  # a permanently bad file is not retried forever
    monkeypatch.setattr(reader, "load_rgb", real)
    fixed = write_images(tmp_path / "fixed", 3, seed=5)[1]
    shutil.copyfile(fixed, tmp_path / "imgs" / fixed.name)  # the user replaced the file
    fourth = extract_cli(*args)  # the file changed: embedded again from scratch
    assert json.loads(fourth.stdout)["changed"] == 1
    assert read_errors(tmp_path / "out") == [] and ids_once(tmp_path / "out") == ["img-000", "img-001", "img-002"]


def test_transient_failure_is_embedded_on_resume(tmp_path, monkeypatch):
    from pipelines.extract.readers import image as reader

    write_images(tmp_path / "imgs", 3)
    real = reader.load_rgb
    monkeypatch.setattr(reader, "load_rgb", lambda path, *a, **k: (_ for _ in ()).throw(OSError("EIO"))
                        if Path(path).stem == "img-002" else real(path, *a, **k))
    args = [tmp_path / "imgs", "-o", tmp_path / "out", *TINY, "--max-error-rate", "1"]
    assert extract_cli(*args).exit_code == 0
    monkeypatch.setattr(reader, "load_rgb", real)
    result = extract_cli(*args)
    assert result.exit_code == 0 and "trying them once more" in result.stderr
    assert read_errors(tmp_path / "out") == [] and len(read_embeddings(tmp_path / "out").ids) == 3


def test_unreachable_paths_are_recorded_with_a_reason(tmp_path, monkeypatch):
    imgs = tmp_path / "imgs"
    write_images(imgs, 2)
    write_images(imgs / "locked", 1, prefix="hidden")
    (imgs / "dangling.png").symlink_to(tmp_path / "gone.png")
    (imgs / "self.png").symlink_to(imgs / "self.png")
    (imgs / "sub").mkdir()
    (imgs / "sub" / "loop").symlink_to(imgs)  # a folder link back to its ancestor
    real_scandir = os.scandir

    def unreadable(path):  # chmod 000 does not stop root: refuse this one folder as the OS would
        if Path(path) == imgs / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", unreadable)
    result = extract_cli(imgs, "-o", tmp_path / "out", *TINY, "--max-error-rate", "1")
    assert result.exit_code == 0, result.output
    errors = {row["id"]: row["error"] for row in read_errors(tmp_path / "out")}
    assert set(errors) == {"dangling", "self", "sub/loop", "locked"}
    assert "dangling symlink" in errors["dangling"] and "symlink loop" in errors["self"]
    assert "symlink loop" in errors["sub/loop"] and "unreadable folder" in errors["locked"]
    assert sorted(read_embeddings(tmp_path / "out").ids) == ["img-000", "img-001"]
    assert load_manifest(tmp_path / "out")["counts"] == {"inputs": 6, "embedded": 2, "errors": 4}


# ---------------------------------------------------------------- config ranges

@pytest.mark.parametrize("key, value", [("part_size", 0), ("max_error_rate", 2.0), ("max_error_rate", -0.1),
                                        ("batch_size", 0), ("workers", -1), ("limit", 0), ("window", 0.0),
                                        ("max_image_pixels", 0), ("num_shards", 0)])
def test_extract_config_ranges_hold_for_toml_configs(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        ExtractConfig(inputs="in", output="out", **{key: value})
    write_images(tmp_path / "train", 2)
    (tmp_path / "labels.csv").write_text("id,label\nimg-000,a\nimg-001,b\n")
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\ntrain = "{tmp_path / "train"}"\nlabels = "{tmp_path / "labels.csv"}"\n'
                      f'output = "{tmp_path / "run"}"\n[extract]\nbackbone = "test_resnet"\nweights = "random"\n'
                      f'device = "cpu"\n{key} = {value}\n')
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 1 and key in result.stderr, result.output
    assert not (tmp_path / "run" / "emb").exists() or not list((tmp_path / "run" / "emb").rglob("part-*"))
