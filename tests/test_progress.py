"""Progress: the items/s shown while extracting (RateMeter), the bars `olymp predict` draws
while it extracts raw test files (real extraction with timm's tiny test_resnet), and the
spinner of `olymp blend`."""

from __future__ import annotations

import re

import pandas as pd
from typer.testing import CliRunner

from cli.app import app
from pipelines.extract.runner import ExtractProgress
from pipelines.core.progress import RateMeter
from tests.test_end_to_end import write_colour_images

runner = CliRunner()
TINY = ["--backbone", "test_resnet", "--weights", "random", "--workers", "0", "--device", "cpu"]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rate_excludes_start_up_and_counts_only_this_jobs_items():
    clock = Clock()
    meter = RateMeter(clock=clock)
    clock.now = 20.0  # model build, worker start-up and the first batch took 20 s
    assert meter.update(8) is None and meter.text() == "-"
    for step in range(1, 11):  # then 8 items every 2 s: 4/s
        clock.now = 20.0 + 2 * step
        meter.update(8 + 8 * step)
    assert meter.rate == 4.0 and meter.text() == "4.0"
    slow = RateMeter(clock=clock)
    slow.update(0)
    clock.now += 4.0
    slow.update(2)
    assert slow.text() == "0.50"


def test_each_extraction_in_one_view_gets_its_own_clock():
    """`olymp run` draws extract-train then extract-test in one view: the second bar's rate
    must not include the first extraction's time (the old view divided by the first task's
    elapsed time: "1.2 img/s" for a real 3.7/s)."""
    from cli.console import ExtractView

    clock = Clock()
    info = {"backbone": "b", "timm_name": "t", "embedding_dim": 4, "device": "cpu", "precision": "fp32", "batch_size": 8,
            "workers": 0, "weights_source": "random", "note": "", "resumed": 0, "modality": "image"}
    rates = []
    with ExtractView() as view:
        for total in (80, 40):
            view.update(ExtractProgress("start", total=total, info=info))
            view.meter.clock = clock
            for done in range(8, total + 1, 8):
                clock.now += 100.0 if done == 8 else 2.0  # a slow first batch, then 4 items/s
                view.update(ExtractProgress("batch", total=total, processed=done))
            rates.append(view.meter.rate)
            view.update(ExtractProgress("done", total=total, processed=total))
    assert rates == [4.0, 4.0]


def test_predict_on_raw_files_shows_the_extraction_progress_unless_quiet(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    labels = write_colour_images(tmp_path / "train", 24, seed=0)
    answers = write_colour_images(tmp_path / "test", 6, seed=1)
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(tmp_path / "labels.csv", index=False)
    for args in (["extract", tmp_path / "train", "-o", tmp_path / "emb", *TINY, "--quiet"],
                 ["train-head", tmp_path / "emb", "--labels", tmp_path / "labels.csv", "--head", "logreg",
                  "--folds", "3", "-o", tmp_path / "run", "--quiet"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path / "test"), "-o", str(tmp_path / "sub.csv"),
                                 "--device", "cpu", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "backbone test_resnet" in result.stderr  # the extraction's header ...
    bar = [line for line in result.stderr.splitlines() if line.startswith("extract")]
    assert bar and re.search(r"6/6 .*(\d+\.\d+|-) img/s", bar[-1]), result.stderr  # ... and its bar, done
    assert sorted(pd.read_csv(tmp_path / "sub.csv", dtype=str)["id"]) == sorted(answers)

    quiet = runner.invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path / "test"), "-o", str(tmp_path / "q.csv"),
                                "--device", "cpu", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout == ""


def test_blend_shows_a_spinner_on_a_terminal_and_nothing_under_quiet(
        tmp_path, make_embeddings, make_csv, make_separable, monkeypatch):
    """A step without a count (blend choosing its weights) gets a spinner with the elapsed time
    on stderr (the same StepSpinner draws train-head and predict inside `olymp run`); never
    under --quiet."""
    import io

    from rich.console import Console

    import cli.console

    ids = [f"{i:03d}" for i in range(60)]
    X, y = make_separable(60, dim=6, n_classes=3, seed=3)
    make_embeddings(tmp_path / "emb", ids, X)
    make_csv(tmp_path / "labels.csv", id=ids, label=[f"c{v}" for v in y])
    for name, extra in (("a", []), ("b", ["--folds-from", str(tmp_path / "a"), "--param", "C=0.1"])):
        result = runner.invoke(app, ["train-head", str(tmp_path / "emb"), "--labels", str(tmp_path / "labels.csv"),
                                     "--head", "logreg", "--folds", "3", "-o", str(tmp_path / name), "--quiet", *extra])
        assert result.exit_code == 0, result.output

    def blend(*extra):
        screen = io.StringIO()
        monkeypatch.setattr(cli.console, "err_console", Console(file=screen, force_terminal=True, width=100))
        result = runner.invoke(app, ["blend", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "blend"),
                                     "--overwrite", *extra])
        assert result.exit_code == 0, result.output
        return screen.getvalue()

    assert "blend: greedy weights over 2 runs" in blend()
    assert blend("--quiet") == ""
