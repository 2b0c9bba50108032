"""The README's examples run as printed, plus the small CLI promises the README makes
(`olymp --version`, flags without `<bool>` in --help, `make help` without colour codes in a pipe).

Which lines run: every line of a ```bash block that directly follows a `<!-- readme-test -->`
comment in README.md (GitHub does not render the comment). Lines a block needs but does not show
go in `<!-- readme-test setup: COMMAND -->` comments between the marker and the fence; they run
first. Each block runs in a fresh copy of one small workspace laid out as the README's examples
expect (data/train, data/test, train.csv, emb/train, demo_data/, contest.toml, ...: see
`workspace`), with `olymp` on PATH as a shim for `python -m cli` and HF_HUB_OFFLINE=1.

A plain `olymp ...` line runs in-process (typer's CliRunner: fast); a line with pipes,
redirections, `$(...)`, globs or `~` runs in bash. A line is skipped, with the reason, when it
needs a CUDA GPU that is not there, the network (`olymp weights pull`), a tool that is not
installed (jq, make), or backbone weights this machine does not have (it ran and said so).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from tests.audio_files import tone
from tests.conftest import write_embeddings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "<!-- readme-test -->"
SETUP = re.compile(r"^<!-- readme-test setup: (.*) -->$")
GPU_WORDS = re.compile(r"--device cuda|--decode gpu|--compile\b|\btorchrun\b")
SHELL_PUNCTUATION = set("();<>|&")
# A line that failed saying one of these is skipped with the reason, not failed: what it needs
# is not on this machine or not in a tiny workspace.
SKIP_WHEN_SAID = {
    "weights not on this machine": re.compile(r"no offline weights|no \S+ weights offline|not in the Hugging Face cache"),
    "needs more rows than the workspace's 30": re.compile(r"more components than a fold's training part allows"),
}
# README lines known not to run yet, each with the issue that tracks it. Strict: a listed line
# that starts to pass fails the test, so the list shrinks as fixes land.
KNOWN_BROKEN: dict[str, str] = {}  # e.g. {"--proba --sample-submission": "issue 12: ..."}


@dataclass
class Block:
    line: int  # README line of the opening fence
    heading: str
    setup: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{words[:40]}"


def readme_blocks(text: str) -> list[Block]:
    """The marked ```bash blocks: setup comments, then the fence's lines (a trailing `\\`
    joins the next line, as the shell does)."""
    lines = text.splitlines()
    blocks, heading, index = [], "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        if line.strip() != MARK:
            index += 1
            continue
        setup = []
        index += 1
        while index < len(lines) and (match := SETUP.match(lines[index].strip())):
            setup.append(match.group(1))
            index += 1
        assert index < len(lines) and lines[index].startswith("```bash"), (
            f"README.md line {index + 1}: {MARK} must be followed by setup comments and a ```bash block"
        )
        block = Block(index + 1, heading, setup)
        index += 1
        pending = ""
        while not lines[index].startswith("```"):
            text_line = pending + lines[index]
            if text_line.rstrip().endswith("\\"):
                pending = text_line.rstrip()[:-1] + " "
            else:
                pending = ""
                if text_line.strip():
                    block.commands.append(text_line.strip())
            index += 1
        blocks.append(block)
        index += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def needs_shell(command: str) -> bool:
    tokens = words(command)
    return (
        not tokens or tokens[0] != "olymp"
        or any(set(token) <= SHELL_PUNCTUATION for token in tokens)
        or any("$" in token or "*" in token or token.startswith("~") for token in tokens)
    )


def skip_reason(command: str) -> str | None:
    import torch

    if "olymp weights pull" in command:
        return "needs the network (olymp weights pull)"
    if GPU_WORDS.search(command) and not torch.cuda.is_available():
        return "needs a CUDA GPU"
    for tool in ("jq", "make"):
        if re.search(rf"(^|[|;&(]\s*){tool}\b", command) and shutil.which(tool) is None:
            return f"needs {tool}, not installed here"
    return None


# --------------------------------------------------------------------------- the workspace

def write_images(folder: Path, count: int, seed: int, suffix: str = ".png", class_folders: bool = False) -> dict[str, str]:
    """Three classes told apart by their dominant colour, 32 px; {file stem: class}. With
    `class_folders` each file sits in its class's folder (the ImageFolder layout)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for index in range(count):
        label = index % 3
        pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        pixels[..., label] += 180
        where = folder / f"c{label}" if class_folders else folder
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(where / f"im{index:03d}{suffix}")
        labels[f"im{index:03d}"] = f"c{label}"
    return labels


def write_labels(path: Path, labels: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(path, index=False)


def extract_default(source: Path, output: Path) -> None:
    result = CliRunner().invoke(app, ["extract", str(source), "-o", str(output), "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("readme"))


def build_workspace(ws: Path) -> Path:
    """The files the README's examples name, tiny: 30 train / 9 test images of 3 colour classes
    (data/train/CLASS/ as ImageFolder lays them out; data/test/, demo_data/, test/ flat), their labels in the forms the examples use, embeddings made with
    the default backbone (emb/train, emb/test, emb/effnet, ...), other sources as small random
    embeddings (emb/resnet, emb/panns), demo sounds for configs/examples/sounds.toml."""
    labels = write_images(ws / "data" / "train", 30, seed=0, class_folders=True)  # labels keyed by the file stem
    tests = write_images(ws / "data" / "test", 9, seed=1, suffix=".jpg")
    write_images(ws / "test", 9, seed=1)
    ids = list(labels)
    tags = {"c0": ["dog"], "c1": ["dog", "bark"], "c2": ["rain"]}
    pd.DataFrame({  # labels in every form the examples use, and an id,path listing (`olymp extract train.csv`)
        "id": ids, "path": [f"data/train/{labels[i]}/{i}.png" for i in ids], "label": [labels[i] for i in ids], "species": [labels[i] for i in ids],
        "patient": [f"p{n // 2}" for n in range(len(ids))], "tags": [" ".join(tags[labels[i]]) for i in ids],
        **{tag: [int(tag in tags[labels[i]]) for i in ids] for tag in ("dog", "bark", "rain")},
    }).to_csv(ws / "train.csv", index=False)
    write_labels(ws / "labels.csv", labels)
    write_labels(ws / "data" / "train_labels.csv", labels)
    for sample in (ws / "sample_submission.csv", ws / "data" / "sample_submission.csv"):
        write_labels(sample, {i: "c0" for i in tests})

    demo = ws / "demo_data"
    write_labels(demo / "train_labels.csv", write_images(demo / "train", 30, seed=2))
    write_labels(demo / "sample_submission.csv", {i: "c0" for i in write_images(demo / "test", 9, seed=3)})
    sounds, rows = demo / "sounds", {}
    for split, count in (("train", 15), ("test", 6)):
        (sounds / split).mkdir(parents=True)
        for index in range(count):
            freq = (200, 800, 2400)[index % 3]
            soundfile.write(sounds / split / f"{split}{index:02d}.wav", tone(1.2, 16000, freq, index), 16000)
            if split == "train":
                rows[f"{split}{index:02d}"] = f"f{freq}"
    write_labels(sounds / "train_labels.csv", rows)

    shutil.copytree(ROOT / "configs" / "examples", ws / "configs" / "examples")
    shutil.copy(ROOT / "configs" / "examples" / "digits.toml", ws / "contest.toml")
    (ws / "home").mkdir()

    extract_default(ws / "data" / "train", ws / "emb" / "train")
    extract_default(ws / "data" / "test", ws / "emb" / "test")
    # The digits example as `make demo` leaves it: blocks that re-run it find its steps done.
    before = Path.cwd()
    os.chdir(ws)
    try:
        result = CliRunner().invoke(app, ["run", "configs/examples/digits.toml", "--quiet"])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(before)
    shutil.copytree(ws / "emb" / "train", ws / "emb" / "effnet")
    shutil.copytree(ws / "emb" / "test", ws / "emb" / "test-effnet")
    rng = np.random.default_rng(0)
    write_embeddings(ws / "emb" / "resnet", ids, rng.normal(size=(len(ids), 8)))
    panns = {"backbone": "panns-cnn14", "modality": "audio", "weights_sha256": "fed"}
    write_embeddings(ws / "emb" / "panns", ids, rng.normal(size=(len(ids), 8)), **panns)
    write_embeddings(ws / "emb" / "test-panns", list(tests), rng.normal(size=(len(tests), 8)), **panns)
    return ws


@pytest.fixture
def olymp_env(tmp_path, monkeypatch) -> dict[str, str]:
    """`olymp` on PATH (a shim for `python -m cli` on this checkout), offline, an empty HF cache."""
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "olymp"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n')
    shim.chmod(0o755)
    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    env = {
        "PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
        "HOME": str(tmp_path / "ws" / "home"), "COLUMNS": "120",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return env


def run_line(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Exit status and output (stdout + stderr) of one README line run from `cwd`."""
    if needs_shell(command):
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail\n{command}"], cwd=cwd, env={**os.environ, **env},
            capture_output=True, text=True, timeout=600,
        )
        return done.returncode, done.stdout + done.stderr
    result = CliRunner().invoke(app, words(command)[1:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        return 99, result.output + "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.output


# --------------------------------------------------------------------------- the tests

def test_the_readme_marks_its_runnable_blocks() -> None:
    assert len(BLOCKS) >= 5 and all(block.commands for block in BLOCKS)
    assert any("olymp --version" in line for line in README.read_text().splitlines()[:40])  # the first screen
    assert "source .venv/bin/activate" in "\n".join(README.read_text().splitlines()[:40])


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs_as_printed(block: Block, workspace: Path, tmp_path: Path, olymp_env, monkeypatch) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    monkeypatch.chdir(ws)
    for command in block.setup:
        code, output = run_line(command, ws, olymp_env)
        assert code == 0, f"setup line failed ({code}): {command}\n{output[-3000:]}"
    failures, skipped, fixed = [], [], []
    for command in block.commands:
        reason = skip_reason(command)
        if reason is not None:
            skipped.append(f"{command}  [{reason}]")
            continue
        code, output = run_line(command, ws, olymp_env)
        known = next((issue for text, issue in KNOWN_BROKEN.items() if text in command), None)
        said = next((why for why, pattern in SKIP_WHEN_SAID.items() if pattern.search(" ".join(output.split()))), None)
        if code != 0 and said is not None:
            skipped.append(f"{command}  [{said}]")
        elif code != 0 and known is None:
            failures.append(f"$ {command}\n(exit {code})\n{output[-2500:]}")
        elif code == 0 and known is not None:
            fixed.append(f"{command}  (listed as broken: {known})")
    for line in skipped:
        print(f"skipped: {line}")
    assert not failures, f"README.md block at line {block.line}:\n\n" + "\n\n".join(failures)
    assert not fixed, "these README lines run now; remove them from KNOWN_BROKEN:\n" + "\n".join(fixed)


def test_version_prints_the_package_version() -> None:
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"olymp {metadata.version('olymp')}"


@pytest.mark.parametrize("command", [[], ["extract"], ["train-head"], ["weights", "list"], ["report"]])
def test_help_shows_no_type_after_plain_flags(command: list[str]) -> None:
    text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
    assert "--help" in text and "<bool>" not in text
    if command == ["train-head"]:
        assert re.search(r"--folds\s+<int", text)  # options that take a value keep their type


def test_every_command_takes_quiet() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands = [(name, cmd) for name, cmd in group.commands.items()]
    commands += [(f"weights {name}", cmd) for name, cmd in group.commands["weights"].commands.items()]
    missing = [name for name, cmd in commands if hasattr(cmd, "params") and not hasattr(cmd, "commands")
               and not any("--quiet" in param.opts for param in cmd.params)]
    assert missing == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_has_colour_only_on_a_terminal() -> None:
    piped = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True)
    assert piped.returncode == 0 and "install" in piped.stdout and "\033[" not in piped.stdout
    note = subprocess.run(["make", "--no-print-directory", "path-note"], cwd=ROOT, capture_output=True, text=True)
    assert "source " in note.stdout and ".venv/bin/activate" in note.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_contest_makefile_names_the_fix_when_olymp_is_not_on_path(tmp_path) -> None:
    done = subprocess.run(
        ["make", "-f", str(ROOT / "configs" / "examples" / "contest.mk"), "-n", "submit"], cwd=tmp_path,
        capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0 and "olymp not found" in done.stderr and "source" in done.stderr
