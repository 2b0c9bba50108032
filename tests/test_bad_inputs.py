"""The bad-input corpus (issue 11): every kind of bad input a contestant can hand olymp, each with
exactly one allowed outcome —

    EMBEDDED  the input became a row of the embeddings (finite vector)
    RECORDED  the input became an error row in _errors.csv (with a reason), and no embedding
    REFUSED   the command printed one line on stderr and exited 1

— and never a traceback, never a silent drop (an input that is neither embedded nor recorded).
Extraction runs once per modality over a folder holding every kind; each kind is then one case.
"""

from __future__ import annotations

import errno
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from pipelines.data.embeddings import read_embeddings, read_errors
from tests.audio_files import tone
from tests.conftest import separable, write_csv, write_embeddings

EMBEDDED, RECORDED, REFUSED = "embedded", "recorded", "refused"
runner = CliRunner()
TINY_IMAGE = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu",
              "--max-error-rate", "1.0"]
TINY_AUDIO = ["--backbone", "logmel-stats", "--workers", "0", "--device", "cpu", "--max-error-rate", "1.0"]


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def assert_no_traceback(result) -> None:
    text = result.output + (result.stderr or "")
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def assert_refused(result, *needles: str) -> None:
    """One line on stderr, exit status 1, no traceback; the line names `needles`."""
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def assert_ok(result) -> None:
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- files

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims width × height pixels and holds no pixel data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _rgb(rng, height=40, width=48) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def make_image_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """kind -> (file, expected outcome)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cases = {}

    def add(kind, name, outcome):
        cases[kind] = (folder / name, outcome)
        return folder / name

    Image.fromarray(_rgb(rng)).save(add("rgb jpeg", "rgb.jpg", EMBEDDED))
    Image.fromarray(_rgb(rng)[..., 0], mode="L").save(add("grayscale png", "grey.png", EMBEDDED))
    rgba = np.dstack([_rgb(rng), rng.integers(0, 256, size=(40, 48), dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(add("rgba png", "rgba.png", EMBEDDED))
    Image.fromarray(_rgb(rng)).convert("CMYK").save(add("cmyk jpeg", "cmyk.jpg", EMBEDDED))
    Image.fromarray(rng.integers(0, 65536, size=(40, 48)).astype(np.uint16)).save(add("16-bit png", "deep.png", EMBEDDED))
    Image.fromarray(_rgb(rng)).convert("P").save(add("palette gif", "palette.gif", EMBEDDED))
    Image.fromarray(_rgb(rng, 1, 1)).save(add("1x1 png", "dot.png", EMBEDDED))
    Image.fromarray(_rgb(rng, 2, 900)).save(add("very wide strip", "strip.png", EMBEDDED))
    Image.fromarray(_rgb(rng)).save(add("upper-case extension", "shout.JPG", EMBEDDED), format="JPEG")
    add("0-byte png", "empty.png", RECORDED).write_bytes(b"")
    add("text named .png", "notes.png", RECORDED).write_text("this is not an image\n")
    add("huge dimensions", "bomb.png", RECORDED).write_bytes(_png_claiming(60_000, 60_000))
    whole = folder / "whole.jpg.tmp"
    Image.fromarray(_rgb(rng, 64, 64)).save(whole, format="JPEG")
    data = whole.read_bytes()
    add("truncated jpeg", "cut.jpg", RECORDED).write_bytes(data[: len(data) // 2])
    add("corrupt jpeg", "garbled.jpg", RECORDED).write_bytes(data[:20] + bytes(rng.integers(0, 256, 400, dtype=np.uint8)))
    Image.fromarray(_rgb(rng, 64, 64)).save(whole, format="PNG")
    data = whole.read_bytes()
    add("truncated png", "cutpng.png", RECORDED).write_bytes(data[: len(data) // 2])
    whole.unlink()
    add("dangling symlink", "gone.png", RECORDED).symlink_to(folder / "no-such-file.png")
    return cases


def make_audio_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True)
    cases = {}

    def add(kind, name, outcome):
        cases[kind] = (folder / name, outcome)
        return folder / name

    soundfile.write(add("16-bit wav", "plain.wav", EMBEDDED), tone(1.0, 16000), 16000, subtype="PCM_16")
    soundfile.write(add("8-bit wav", "eight.wav", EMBEDDED), tone(1.0, 8000), 8000, subtype="PCM_U8")
    soundfile.write(add("24-bit flac", "deep.flac", EMBEDDED), tone(1.0, 44100), 44100, subtype="PCM_24")
    soundfile.write(add("stereo wav", "stereo.wav", EMBEDDED), tone(1.0, 22050, channels=2), 22050)
    soundfile.write(add("ogg vorbis", "fine.ogg", EMBEDDED), tone(1.0, 22050), 22050, subtype="VORBIS")
    soundfile.write(add("silent wav", "silent.wav", EMBEDDED), np.zeros(16000, np.float32), 16000)
    soundfile.write(add("1-sample wav", "one.wav", EMBEDDED), np.full(1, 0.1, np.float32), 16000)
    noisy = tone(1.0, 16000)
    noisy[10:20] = np.nan
    soundfile.write(add("nan samples", "nans.wav", EMBEDDED), noisy, 16000, subtype="FLOAT")
    add("0-byte wav", "empty.wav", RECORDED).write_bytes(b"")
    add("text named .mp3", "fake.mp3", RECORDED).write_text("not audio at all\n" * 20)
    add("garbage wav header", "garbage.wav", RECORDED).write_bytes(b"RIFF\0\0\0\0WAVEjunk" + bytes(range(256)))
    soundfile.write(add("zero-frame flac", "zero.flac", RECORDED), np.zeros(0, np.float32), 16000)
    whole = folder / "whole.tmp"
    soundfile.write(whole, tone(20.0, 22050), 22050, format="OGG", subtype="VORBIS")
    data = whole.read_bytes()
    add("truncated ogg", "cut.ogg", RECORDED).write_bytes(data[: len(data) // 3])
    whole.unlink()
    return cases


def _matches(row_id: str, path: Path, root: Path) -> bool:
    """Whatever id form extract uses (stem, name, relative path with or without its suffix)."""
    relative = path.relative_to(root).as_posix()
    return row_id in {path.stem, path.name, relative, relative.rsplit(".", 1)[0]}


def outcome_of(path: Path, root: Path, out: Path) -> str:
    embedded = [i for i in read_embeddings(out).ids if _matches(str(i), path, root)]
    recorded = [r for r in read_errors(out) if _matches(r["id"], path, root) or r.get("path") == str(path)]
    if embedded and not recorded:
        return EMBEDDED
    if recorded and not embedded:
        return RECORDED
    return f"embedded {len(embedded)}, recorded {len(recorded)}"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    cases = make_image_corpus(root / "in")
    result = invoke("extract", root / "in", "-o", root / "emb", *TINY_IMAGE)
    return root / "in", root / "emb", cases, result


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    cases = make_audio_corpus(root / "in")
    result = invoke("extract", root / "in", "-o", root / "emb", *TINY_AUDIO, "--window", "1.0")
    return root / "in", root / "emb", cases, result


IMAGE_KINDS = ["rgb jpeg", "grayscale png", "rgba png", "cmyk jpeg", "16-bit png", "palette gif", "1x1 png",
               "very wide strip", "upper-case extension", "0-byte png", "text named .png", "huge dimensions",
               "truncated jpeg", "corrupt jpeg", "truncated png", "dangling symlink"]
AUDIO_KINDS = ["16-bit wav", "8-bit wav", "24-bit flac", "stereo wav", "ogg vorbis", "silent wav", "1-sample wav",
               "nan samples", "0-byte wav", "text named .mp3", "garbage wav header", "zero-frame flac", "truncated ogg"]


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_image_corpus(image_run, kind):
    root, out, cases, result = image_run
    assert_ok(result)
    path, expected = cases[kind]
    assert outcome_of(path, root, out) == expected
    if expected == EMBEDDED:
        emb = read_embeddings(out)
        assert np.isfinite(emb.vectors).all()


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_audio_corpus(audio_run, kind):
    root, out, cases, result = audio_run
    assert_ok(result)
    path, expected = cases[kind]
    assert outcome_of(path, root, out) == expected
    if expected == RECORDED:
        (record,) = [r for r in read_errors(out) if _matches(r["id"], path, root)]
        assert record["error"].strip() and "does not exist" not in record["error"], record  # a reason, and the true one


def test_corpus_accounts_for_every_input(image_run, audio_run):
    """No silent drop: the summary counts every file of the folder, embedded or recorded."""
    for root, out, cases, result in (image_run, audio_run):
        assert_ok(result)
        manifest = json.loads((out / "_manifest.json").read_text())
        assert manifest["counts"]["inputs"] == len(cases) == manifest["counts"]["embedded"] + manifest["counts"]["errors"]


# --------------------------------------------------------------------------- labels

@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    X, y = separable(60, dim=8, n_classes=3)
    ids = [f"s{i:02d}" for i in range(60)]
    write_embeddings(root / "emb", ids, X)
    return root, ids, [f"c{k}" for k in y]


def _train(root: Path, labels: Path, *extra):
    return invoke("train-head", root / "emb", "--labels", labels, "-o", root / "runs" / labels.stem,
                  "--head", "logreg", "--folds", "2", "--overwrite", *extra)


LABEL_REFUSALS = {
    # kind: (CSV text, or bytes; words the error line must hold)
    "0-byte csv": (b"", ["empty"]),
    "header-only csv": ("id,label\n", ["no rows"]),
    "missing id column": ("name,label\ns00,c0\n", ["no column 'id'"]),
    "missing target column": ("id,klass\ns00,c0\n", ["no column 'label'"]),
    "duplicate ids": ("id,label\ns00,c0\ns00,c1\ns01,c2\n", ["duplicate"]),
    "empty id": ("id,label\n,c0\ns01,c1\n", ["empty 'id'"]),
    "semicolon separator": ("id;label\ns00;c0\ns01;c1\n", ["comma-separated"]),
    "ids not matching": ("id,label\n" + "".join(f"x{i},c{i % 3}\n" for i in range(30)), ["matches a file in"]),
    "every target missing": ("id,label\n" + "".join(f"s{i:02d},\n" for i in range(30)), ["no row"]),
    "ragged rows": ("id,label\ns00,c0,extra,more\ns01\n" + 'x,"unclosed\n', []),
    "binary file": (bytes(range(256)) * 8, []),
    "inf in a numeric target": ("id,label\n" + "".join(f"s{i:02d},{'inf' if i == 3 else i * 0.5}\n" for i in range(30)),
                                ["'inf'"]),
    "single class": ("id,label\n" + "".join(f"s{i:02d},c0\n" for i in range(30)), ["single value"]),
}


@pytest.mark.parametrize("kind", list(LABEL_REFUSALS))
def test_labels_refused(embeddings, kind):
    root, _, _ = embeddings
    content, needles = LABEL_REFUSALS[kind]
    path = root / f"{kind.replace(' ', '_')}.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_refused(_train(root, path), *needles)


def test_labels_with_bom_are_read(embeddings):
    root, ids, classes = embeddings
    path = root / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("id,label\n" + "".join(f"{i},{c}\n" for i, c in zip(ids, classes))).encode())
    result = _train(root, path, "--json")
    assert_ok(result)
    assert json.loads(result.stdout)["n_rows"] == len(ids)


@pytest.mark.parametrize("spelling", ["NaN", "nan", "NA"])
def test_nan_string_label_is_missing_and_warned(embeddings, spelling):
    root, ids, classes = embeddings
    labels = [spelling if i % 10 == 0 else c for i, c in enumerate(classes)]
    path = write_csv(root / f"nan_{spelling}.csv", id=ids, label=labels)
    result = _train(root, path, "--json")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["n_rows"] == len(ids) - 6  # the six "NaN" rows are left out, not an extra class
    assert spelling not in summary["classes"]
    assert any(f"'{spelling}'" in w and "missing" in w for w in summary["warnings"])
    assert f"'{spelling}'" in result.stderr  # shown (without --quiet)
    quiet = _train(root, path, "--quiet")
    assert_ok(quiet)
    assert quiet.stderr.strip() == ""


# --------------------------------------------------------------------------- run configs

CONFIG_REFUSALS = {
    "not toml": ("[data\ntrain = ", ["not valid toml"]),
    "no data table": ("[head]\nname = 'logreg'\n", ["no [data]"]),
    "unknown table": ("[data]\ntrain='t'\nlabels='l.csv'\n[heads]\nx=1\n", ["unknown table"]),
    "unknown key": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nfold=5\n", ["head.fold"]),
    "bad type": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nfolds='five'\n", ["head.folds"]),
    "bad element type": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nseeds=['a']\n", ["head.seeds"]),
    "folds below 2": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nfolds=1\n", ["head.folds", "≥ 2"]),
    "negative seed": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nseed=-1\n", ["head.seed"]),
    "part_size 0": ("[data]\ntrain='t'\nlabels='l.csv'\n[extract]\npart_size=0\n", ["extract.part_size"]),
    "max_error_rate 2": ("[data]\ntrain='t'\nlabels='l.csv'\n[extract]\nmax_error_rate=2.0\n", ["extract.max_error_rate"]),
    "smoke.limit 0": ("[data]\ntrain='t'\nlabels='l.csv'\n[smoke]\nlimit=0\n", ["smoke.limit"]),
    "threshold 1.5": ("[data]\ntrain='t'\nlabels='l.csv'\n[predict]\nthreshold=1.5\n", ["predict.threshold"]),
    "unknown head": ("[data]\ntrain='t'\nlabels='l.csv'\n[head]\nname='xgboost'\n", ["xgboost"]),
}


@pytest.mark.parametrize("kind", list(CONFIG_REFUSALS))
def test_run_config_refused(tmp_path, kind):
    text, needles = CONFIG_REFUSALS[kind]
    config = tmp_path / "run.toml"
    config.write_text(text)
    assert_refused(invoke("run", config), *needles)


def test_every_numeric_config_key_has_a_range():
    """A numeric key added to a step config must get its range in runconfig.RANGES too."""
    import typing

    from pipelines.chain import runconfig

    def numeric(hint) -> bool:
        args = typing.get_args(hint) or (hint,)
        return any(a in (int, float) or numeric(a) for a in args if a is not hint) or hint in (int, float)

    tables = [t for t in (*runconfig.PLAIN_TABLES, *runconfig.STEP_TABLES) if t not in runconfig.SELF_CHECKED_TABLES]
    keys = {(t, key) for t in tables for key, (_, hint) in runconfig.table_keys(t).items() if numeric(hint)}
    assert keys <= set(runconfig.RANGES), sorted(keys - set(runconfig.RANGES))


# --------------------------------------------------------------------------- run folders

@pytest.fixture(scope="module")
def good_run(embeddings):
    root, ids, classes = embeddings
    labels = write_csv(root / "good.csv", id=ids, label=classes)
    result = invoke("train-head", root / "emb", "--labels", labels, "-o", root / "good_run", "--head", "logreg",
                    "--folds", "2")
    assert_ok(result)
    return root / "good_run", root / "emb"


def _damage_run(kind: str, run: Path) -> None:
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = run / manifest["models"][0]
    if kind == "missing manifest":
        manifest_path.unlink()
    elif kind == "corrupt manifest json":
        manifest_path.write_text(manifest_path.read_text()[:40])
    elif kind == "manifest not a run":
        manifest_path.write_text(json.dumps({"kind": "embeddings"}))
    elif kind == "missing model file":
        model.unlink()
    elif kind == "truncated model file":
        model.write_bytes(model.read_bytes()[:20])
    elif kind == "model path outside the run":
        outside = run.parent / "elsewhere.json"
        shutil.copy(model, outside)
        manifest["models"][0] = f"../{outside.name}"
        manifest_path.write_text(json.dumps(manifest))


RUN_DAMAGE = ["missing manifest", "corrupt manifest json", "manifest not a run", "missing model file",
              "truncated model file", "model path outside the run"]


# what the error line must name, where the fix is settled
RUN_DAMAGE_NAMES = {"corrupt manifest json": ["manifest.json", "--overwrite"], "missing manifest": ["manifest.json"]}


@pytest.mark.parametrize("kind", RUN_DAMAGE)
def test_damaged_run_folder_refused(good_run, tmp_path, kind):
    run, test_emb = good_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _damage_run(kind, copy)
    result = invoke("predict", copy, test_emb, "-o", tmp_path / "submission.csv")
    assert_refused(result, *RUN_DAMAGE_NAMES.get(kind, []))
    assert not (tmp_path / "submission.csv").exists()


def test_embedding_parts_of_another_width_refused(tmp_path):
    emb = write_embeddings(tmp_path / "emb", ["a", "b", "c", "d"], np.ones((4, 6)))
    manifest = json.loads((emb / "_manifest.json").read_text())
    manifest["embedding_dim"] = 4  # the parts hold 6-wide vectors
    (emb / "_manifest.json").write_text(json.dumps(manifest))
    labels = write_csv(tmp_path / "l.csv", id=["a", "b", "c", "d"], label=["x", "y", "x", "y"])
    result = invoke("train-head", emb, "--labels", labels, "-o", tmp_path / "run", "--head", "logreg", "--folds", "2")
    assert_refused(result, "6-wide", "says 4")


def test_embedding_manifest_not_json_refused(tmp_path):
    emb = write_embeddings(tmp_path / "emb", ["a", "b", "c", "d"], np.ones((4, 6)))
    (emb / "_manifest.json").write_text("{not json")
    labels = write_csv(tmp_path / "l.csv", id=["a", "b", "c", "d"], label=["x", "y", "x", "y"])
    result = invoke("train-head", emb, "--labels", labels, "-o", tmp_path / "run", "--head", "logreg", "--folds", "2")
    assert_refused(result, "_manifest.json")


# --------------------------------------------------------------------------- the command line itself

USAGE_REFUSALS = {
    # kind: (arguments, with {dir} and {csv} for an existing folder and file; words the error line must hold)
    "unknown option": (["train-head", "--bogus"], ["--bogus"]),
    "unknown command": (["trian-head"], ["trian-head"]),
    "missing argument": (["train-head"], ["EMBEDDINGS"]),
    "missing option": (["predict", "{dir}", "{dir}"], ["--output"]),
    "bad int": (["train-head", "{dir}", "--labels", "{csv}", "-o", "r", "--folds", "abc"], ["--folds"]),
    "int below its minimum": (["inspect", "{dir}", "--labels", "{csv}", "--neighbors", "0"], ["--neighbors"]),
    "float above its maximum": (["extract", "{dir}", "-o", "out", "--max-error-rate", "1.5"], ["--max-error-rate"]),
    "path that does not exist": (["extract", "/no/such/folder", "-o", "out"], ["/no/such/folder"]),
    "file where a folder belongs": (["train-head", "{csv}", "--labels", "{csv}", "-o", "r"], ["EMBEDDINGS"]),
    "unknown subcommand": (["weights", "bogus"], ["bogus"]),
}


@pytest.mark.parametrize("kind", list(USAGE_REFUSALS))
def test_usage_errors_are_one_line_exit_1(tmp_path, kind):
    args, needles = USAGE_REFUSALS[kind]
    csv = write_csv(tmp_path / "l.csv", id=["a"], label=["x"])
    assert_refused(invoke(*(a.format(dir=tmp_path, csv=csv) for a in args)), *needles)


@pytest.mark.parametrize("args", [["--help"], [], ["train-head", "--help"], ["weights"]])
def test_help_still_exits_0(args):
    result = invoke(*args)
    assert_ok(result)
    assert "Usage" in result.output


def test_disk_full_is_one_line(embeddings, monkeypatch):
    root, ids, classes = embeddings
    labels = write_csv(root / "full.csv", id=ids, label=classes)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "runs" / "full" / "oof.csv"))

    monkeypatch.setattr("pipelines.train.train.write_reports", full)
    assert_refused(_train(root, labels), "disk full", "oof.csv", "choose another -o")


def test_unexpected_error_is_one_line_unless_debug(embeddings, monkeypatch):
    root, ids, classes = embeddings
    labels = write_csv(root / "boom.csv", id=ids, label=classes)

    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("pipelines.train.train.write_reports", boom)
    assert_refused(_train(root, labels), "ZeroDivisionError", "OLYMP_DEBUG=1")
    monkeypatch.setenv("OLYMP_DEBUG", "1")
    debug = _train(root, labels)
    assert isinstance(debug.exception, ZeroDivisionError)  # the traceback is there for a bug report


def test_library_warnings_one_line_and_silenced_by_quiet(embeddings, monkeypatch):
    """A Python warning from a library (matplotlib while drawing, sklearn...) is one yellow line,
    and --quiet silences it like every other warning."""
    import warnings

    import pipelines.train.train

    root, ids, classes = embeddings
    labels = write_csv(root / "warn.csv", id=ids, label=classes)
    drawing = pipelines.train.train.write_reports

    def noisy(*args, **kwargs):
        warnings.warn("Tight layout not applied.\nsecond line", UserWarning)
        return drawing(*args, **kwargs)

    monkeypatch.setattr("pipelines.train.train.write_reports", noisy)
    shown = _train(root, labels)
    assert_ok(shown)
    lines = [line for line in shown.stderr.splitlines() if "Tight layout" in line]
    assert lines == ["warning: UserWarning: Tight layout not applied. second line"], shown.stderr
    quiet = _train(root, labels, "--quiet")
    assert_ok(quiet)
    assert quiet.stderr.strip() == ""


def test_report_drawing_warnings_never_print(tmp_path, recwarn, monkeypatch):
    """The drawing code itself keeps matplotlib's warnings in (they are about the picture)."""
    import warnings

    import matplotlib.axes

    from pipelines.train.report import draw_fold_scores

    real = matplotlib.axes.Axes.set_ylim

    def warn_then_set(self, *args, **kwargs):
        warnings.warn("Attempting to set identical low and high ylims", UserWarning)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylim", warn_then_set)
    draw_fold_scores(tmp_path / "f.png", "multiclass", "accuracy",
                     [{"fold": 0, "accuracy": 1.0}, {"fold": 1, "accuracy": 1.0}], {"accuracy": 1.0})
    assert not [w for w in recwarn if "ylims" in str(w.message)]
    assert (tmp_path / "f.png").is_file()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 48 KiB tmpfs, where mounting is allowed (root in a container, CI with sudo); else skipped."""
    import subprocess

    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_real_full_disk_is_one_line(tmp_path, tiny_disk):
    X, y = separable(400, dim=64, n_classes=3)
    ids = [f"r{i:03d}" for i in range(400)]
    emb = write_embeddings(tmp_path / "emb", ids, X)
    labels = write_csv(tmp_path / "l.csv", id=ids, label=[f"c{k}" for k in y])
    result = invoke("train-head", emb, "--labels", labels, "-o", tiny_disk / "run", "--head", "logreg", "--folds", "2")
    assert_refused(result, "disk full", "choose another -o")


def test_cut_short_run_manifest_names_the_fix(good_run, tmp_path):
    run, _ = good_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _damage_run("corrupt manifest json", copy)
    assert_refused(invoke("report", copy), "manifest.json", "not valid JSON", "--overwrite")
