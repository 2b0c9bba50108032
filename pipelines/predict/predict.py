"""`predict`: a train-head run + test embeddings (or raw test inputs) -> a submission frame.

Steps: resolve inputs (extracting raw ones with the training backbone) -> check fingerprints
against training -> average the fold models -> give ids whose extraction failed the training
prior -> shape the frame (labels, or one probability column per class; like the contest's
sample submission when given) -> write the CSV.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.embeddings import MANIFEST_NAME, part_files, read_errors
from pipelines.core.errors import ConfigError, InputError, MismatchError
from pipelines.core.io import prepare_output_dir, write_atomic, write_text_atomic
from pipelines.train.metrics import DEFAULT_THRESHOLD, multilabel_decisions
from pipelines.train.blenddir import BLEND_KIND, load_blend, manifest_kind
from pipelines.train.rundir import TEST_EMBEDDINGS_DIR, load_run
from pipelines.predict.blend_predictor import predict_blend
from pipelines.predict.config import PredictConfig
from pipelines.predict.run_predictor import LISTINGS_DIR, Progress, _prior_rows, extract_raw, is_embedding_dir, predict_run, prune_caches


KEEP_CACHES = 3  # per training embedding set: the most recently used raw-input extractions kept


@dataclass
class PredictResult:
    frame: pd.DataFrame  # the submission, one row per test id
    task: str
    proba: bool  # whether `frame` holds probabilities
    n_rows: int  # rows in `frame`
    n_prior: int  # rows that got the training prior (no embedding: failed or missing)
    n_models: int  # fold models averaged (over every member of a blend)
    embeddings: list[str]  # test embedding dirs used (extracted ones included)
    output: Path | None
    warnings: list[str] = field(default_factory=list)
    n_members: int = 0  # member runs combined (weight > 0), when run_dir is a blend

    def summary(self) -> dict:
        """JSON-ready digest (what `predict --json` prints)."""
        return {
            "output": str(self.output), "task": self.task, "proba": self.proba, "rows": self.n_rows,
            "prior_rows": self.n_prior, "models": self.n_models, "embeddings": self.embeddings,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------- inputs


def inputs_from_text(text: str, run_dir: str | Path) -> list[str]:
    """Test inputs read from stdin (`olymp predict RUN -`): one embedding dir per line, or a list
    of test files (one path per line, or a CSV with a `path` and optionally an `id` column).
    A file list is saved as RUN_DIR/test_embeddings/listings/stdin-<hash>.csv with absolute paths;
    its extraction is keyed by the files' content like a folder's, so the same files piped again
    reuse it."""
    import io

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError("stdin held no test inputs; pipe a list of test files, e.g. ls test/*.png | olymp predict RUN - -o sub.csv")
    if all(is_embedding_dir(line) for line in lines):
        return lines
    header = [cell.strip() for cell in lines[0].split(",")]
    if "path" in header:
        frame = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)
    else:
        frame = pd.DataFrame({"id": [Path(line).stem for line in lines], "path": lines})  # ids as for a folder
    frame["path"] = [str(Path(p).resolve()) for p in frame["path"]]
    body = frame.to_csv(index=False)
    listing = Path(run_dir) / TEST_EMBEDDINGS_DIR / LISTINGS_DIR / f"stdin-{hashlib.sha256(body.encode()).hexdigest()[:12]}.csv"
    listing.parent.mkdir(parents=True, exist_ok=True)
    if not listing.is_file() or listing.read_text() != body:
        write_text_atomic(listing, body)
    os.utime(listing)
    return [str(listing)]


def check_test_inputs(inputs: list[str]) -> None:
    """Refuse, before any work, test inputs that are missing or an unfinished extraction (runs and blends alike)."""
    if not inputs:
        raise ConfigError("no test input given; e.g. olymp predict runs/a test_emb/ -o submission.csv")
    for path in inputs:
        if not Path(path).exists():
            raise InputError(f"{path} does not exist; pass a test embedding dir or a folder/listing of test files")
        if Path(path).is_dir() and not is_embedding_dir(path) and part_files(path):
            raise InputError(f"{path} has embedding parts but no {MANIFEST_NAME}; re-run olymp extract into it to finish")


def resolve_inputs(config: PredictConfig, run: dict, notify: Progress, extract_progress=None) -> list[str]:
    """One test embedding dir per training embedding set, extracting raw inputs first."""
    trained = run["embeddings"]
    inputs = [str(p) for p in config.inputs]
    if len(inputs) == len(trained):
        pairs = list(zip(inputs, trained))
    elif len(inputs) == 1 and not is_embedding_dir(inputs[0]):
        pairs = [(inputs[0], entry) for entry in trained]  # one raw input, once per training backbone
    else:
        backbones = ", ".join(str(entry.get("backbone")) for entry in trained)
        raise InputError(
            f"the run was trained on {len(trained)} embedding set(s) ({backbones}) and got {len(inputs)}; "
            f"pass {len(trained)} test embedding dir(s) in that order, or one raw input folder/listing"
        )
    dirs = [
        source if is_embedding_dir(source) else extract_raw(source, entry, Path(config.run_dir), config, notify, extract_progress)
        for source, entry in pairs
    ]
    if any(not is_embedding_dir(source) for source, _ in pairs):
        prune_caches(Path(config.run_dir), KEEP_CACHES * len(trained), dirs + [str(p) for p in inputs])
    return dirs


# --------------------------------------------------------------------------- predictions


def _read_sample(path: str) -> pd.DataFrame:
    try:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {Path(path).name} as CSV ({error}); pass --sample-submission with the contest's CSV") from None
    if sample.shape[1] < 2:
        raise InputError(f"{Path(path).name} has {sample.shape[1]} column(s); a sample submission has an id column and target column(s)")
    return sample


def _layout(run: dict, proba: bool, sample: pd.DataFrame | None, notify: Progress) -> tuple[str, list[str], str]:
    """(id column name, value column names, mode) where mode is label | proba | positive | value."""
    task, classes = run["task"], run["classes"]
    if task == "multilabel":
        return _multilabel_layout(run, proba, sample, notify)
    if task == "regression":
        if proba:
            raise ConfigError("a regression run has no class probabilities; drop --proba")
    if sample is None:
        id_name, target_name = run["labels"]["id_col"], run["labels"]["target_col"]
        if task == "regression":
            return id_name, [target_name], "value"
        return (id_name, list(classes), "proba") if proba else (id_name, [target_name], "label")

    id_name, columns = str(sample.columns[0]), [str(c) for c in sample.columns[1:]]
    if task == "regression":
        if len(columns) != 1:
            raise InputError(f"the sample submission has {len(columns)} target columns ({', '.join(columns)}); a regression run writes one")
        return id_name, columns, "value"
    if len(columns) == len(classes) and set(columns) == set(classes):
        if not proba:
            notify("info", "the sample submission has one column per class: writing probabilities")
        return id_name, columns, "proba"
    if len(columns) == 1:
        if proba and task == "binary":
            return id_name, columns, "positive"  # P(classes[1]) in the single column
        if proba:  # an ordinary id,label sample: its ids and order, one probability column per class
            notify("info", f"--proba: one probability column per class in place of the sample's '{columns[0]}'")
            return id_name, list(classes), "proba"
        return id_name, columns, "label"
    raise _not_the_runs(columns, classes, "classes")


def _not_the_runs(columns: list[str], classes: list[str], what: str) -> MismatchError:
    return MismatchError(
        f"the sample submission's columns ({', '.join(columns)}) are not the run's {what} "
        f"({', '.join(classes)}); pass the contest's sample file, or drop --sample-submission"
    )


def _multilabel_layout(run: dict, proba: bool, sample: pd.DataFrame | None, notify: Progress) -> tuple[str, list[str], str]:
    """Multilabel modes: proba (a probability column per label), decisions (a 0/1 column per
    label) or joined (one column of the predicted labels joined by the run's --label-sep)."""
    classes, labels = run["classes"], run["labels"]
    if sample is None:
        if proba:
            return labels["id_col"], list(classes), "proba"
        if labels.get("label_sep") is not None:
            return labels["id_col"], [labels["target_col"]], "joined"
        return labels["id_col"], list(classes), "decisions"  # like the training CSV's 0/1 columns
    id_name, columns = str(sample.columns[0]), [str(c) for c in sample.columns[1:]]
    if len(columns) == len(classes) and set(columns) == set(classes):
        if not proba:
            notify("info", "the sample submission has one column per label: writing 0/1 decisions (--proba for probabilities)")
        return id_name, columns, "proba" if proba else "decisions"
    if len(columns) == 1:
        if proba:  # its ids and order, one probability column per label
            notify("info", f"--proba: one probability column per label in place of the sample's '{columns[0]}'")
            return id_name, list(classes), "proba"
        return id_name, columns, "joined"
    raise _not_the_runs(columns, classes, "labels")


def _decisions(pred: np.ndarray, run: dict, threshold: float | None) -> np.ndarray:
    """0/1 per label at the threshold; rows with none get their top label when every training
    row had a label (`at_least_one_label`), since an empty answer is then never right."""
    chosen = threshold if threshold is not None else run.get("threshold", DEFAULT_THRESHOLD)
    return multilabel_decisions(pred, chosen, at_least_one=bool(run.get("at_least_one_label", False)))


def _frame(ids, pred, run, id_name, columns, mode, threshold=None) -> pd.DataFrame:
    frame = pd.DataFrame({id_name: pd.Series(ids, dtype=object)})
    classes = run["classes"]
    if mode == "joined":
        separator = run["labels"].get("label_sep") or " "
        names = np.asarray(classes, dtype=object)
        frame[columns[0]] = [separator.join(names[row.astype(bool)]) for row in _decisions(pred, run, threshold)]
    elif mode == "decisions":
        decided = _decisions(pred, run, threshold)
        order = [classes.index(c) for c in columns]
        frame = pd.concat([frame, pd.DataFrame(decided[:, order], columns=columns)], axis=1)
    elif mode == "value":
        frame[columns[0]] = pred
    elif mode == "label":
        frame[columns[0]] = np.asarray(classes, dtype=object)[pred.argmax(axis=1)]
    elif mode == "positive":
        frame[columns[0]] = pred[:, 1]
    else:
        order = [classes.index(c) for c in columns]
        frame = pd.concat([frame, pd.DataFrame(pred[:, order], columns=columns)], axis=1)
    return frame


def test_extensions(dirs: list[str], ids) -> dict[str, str] | None:
    """id -> file extension of the test inputs, re-listed from the test embedding manifests."""
    from pipelines.data.embeddings import load_manifest
    from pipelines.data.ids import file_extensions

    found: dict[str, str] = {}
    for path in dirs:
        found.update(file_extensions(load_manifest(path), [], read_errors(path)) or {})
    return found if all(str(i) in found for i in ids) else None


def spell_test_ids(run: dict, ids: np.ndarray, dirs: list[str]) -> np.ndarray:
    """Test ids in the spelling of the run's labels (stem, file name, relative path...)."""
    from pipelines.data.ids import FORMS, spell_all

    form = run["labels"].get("id_form") or FORMS[0]
    if form == FORMS[0]:
        return ids
    exts = test_extensions(dirs, ids) if form.endswith("+ext") else None
    return spell_all(form, ids, exts, run["labels"].get("id_extension"), ", ".join(dirs))


def _follow_sample(sample, id_name, ids, pred, usable, run, notes, path, dirs=()):
    """Rows in the sample's order, its ids as it spells them (stem, file name, relative path:
    pipelines.data.ids picks the form); sample ids without a test input get the prior."""
    from pipelines.data.ids import match_ids

    wanted = sample[id_name].to_numpy(dtype=object)
    if len(wanted) == 0:
        raise InputError(f"{Path(path).name} has no rows; pass the contest's sample submission")
    if not len(ids):
        raise InputError(f"no test input was embedded; the sample {Path(path).name} has nothing to match")
    found = match_ids(wanted, ids, lambda: test_extensions(list(dirs), ids), Path(path).name,
                      ", ".join(dirs) or "the test inputs",
                      fix="pass the test inputs this sample lists (its first column names the test files)").positions
    hit = found >= 0
    if (~hit).any():
        notes.append(f"{int((~hit).sum())} ids of the sample submission are not in the test inputs; they get the training prior")
    if len(ids) > hit.sum():
        notes.append(f"{len(ids) - int(hit.sum())} test ids are not in the sample submission; they are left out")
    ordered = _prior_rows(run, len(wanted))
    ordered[hit] = pred[found[hit]]
    ordered_usable = np.zeros(len(wanted), dtype=bool)
    ordered_usable[hit] = usable[found[hit]]
    return wanted, ordered, ordered_usable


def load_predictor(run_dir: Path) -> dict:
    """The manifest of a train-head run or of a blend (both predict the same way)."""
    if manifest_kind(run_dir) == BLEND_KIND:  # a corrupt manifest.json: one line naming it
        return load_blend(run_dir)
    return load_run(run_dir)


def write_submission(frame: pd.DataFrame, output: Path) -> None:
    """The CSV written whole or not at all (temp + rename): a kill or a full disk leaves the
    previous submission as it was."""
    prepare_output_dir(output.parent, "pass -o with a file path inside a folder")
    write_atomic(output, lambda tmp: frame.to_csv(tmp, index=False))


def predict(config: PredictConfig, on_progress: Progress | None = None, extract_progress=None) -> PredictResult:
    """Predict every test id with the run's fold models (or a blend's member runs, weighted);
    write `config.output` when given. Raw test inputs are extracted first, reporting to
    `extract_progress` (pipelines.extract.runner.ExtractProgress events)."""
    notify = on_progress or (lambda level, message: None)
    run_dir = Path(config.run_dir)
    run = load_predictor(run_dir)
    check_test_inputs([str(p) for p in config.inputs])
    sample = _read_sample(config.sample_submission) if config.sample_submission else None
    id_name, columns, mode = _layout(run, config.proba, sample, notify)

    if run["kind"] == "head_run":
        predicted = predict_run(run_dir, run, resolve_inputs(config, run, notify, extract_progress),
                                config.allow_tta_mismatch, notify)
    else:
        predicted = predict_blend(run_dir, run, config, notify, extract_progress)
    all_ids, pred, usable, notes = predicted.ids, predicted.pred, predicted.usable, list(predicted.notes)

    if sample is not None:
        all_ids, pred, usable = _follow_sample(sample, id_name, all_ids, pred, usable, run, notes, config.sample_submission,
                                               predicted.dirs)
    else:
        all_ids = spell_test_ids(run, all_ids, predicted.dirs)
    for note in notes:
        notify("warning", note)

    frame = _frame(all_ids, pred, run, id_name, columns, mode, config.threshold)
    output = None
    if config.output:
        output = Path(config.output)
        write_submission(frame, output)
    return PredictResult(
        frame=frame, task=run["task"], proba=mode in ("proba", "positive"), n_rows=len(frame),
        n_prior=int((~usable).sum()), n_models=predicted.n_models, embeddings=predicted.dirs, output=output,
        warnings=notes, n_members=sum(member["weight"] > 0 for member in run.get("members", [])),
    )
