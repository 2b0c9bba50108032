"""`predict`: a train-head run + test embeddings (or raw test inputs) -> a submission frame.

Steps: resolve inputs (extracting raw ones with the training backbone) -> check fingerprints
against training -> average the fold models -> give ids whose extraction failed the training
prior -> shape the frame (labels, or one probability column per class; like the contest's
sample submission when given) -> write the CSV.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.embeddings import FINGERPRINT_FIELDS, MANIFEST_NAME, fingerprint, part_files, read_errors, unrecorded_fields
from pipelines.core.errors import ConfigError, InputError, MismatchError, OlympError
from pipelines.train.features import FeatureTransform
from pipelines.core.fileio import write_atomic, write_text_atomic
from pipelines.heads import get_head
from pipelines.train.metrics import DEFAULT_THRESHOLD, multilabel_decisions
from pipelines.train.train import load_sets, model_companions
from pipelines.train.rundir import REBUILD, RUN_MANIFEST, TEST_EMBEDDINGS_DIR, check_run_files, load_run

# on_progress(level, message): level is "info" or "warning".
Progress = Callable[[str, str], None]

LISTINGS_DIR = "listings"  # inside TEST_EMBEDDINGS_DIR: the stdin listings, named by their content
KEEP_CACHES = 3  # per training embedding set: the most recently used raw-input extractions kept


@dataclass
class PredictConfig:
    # --- inputs
    run_dir: str  # a train-head run directory
    inputs: list[str]  # test embedding dirs in the training order, or one raw input (folder / listing)
    # --- output
    output: str | None = None  # submission CSV to write; None: only return the frame
    proba: bool = False  # one probability column per class (or label) instead of the predicted label(s)
    threshold: float | None = None  # multilabel: decision threshold; None: the run's (tuned at train-head)
    sample_submission: str | None = None  # the contest's sample: row order, id and target column names
    # --- extraction of raw inputs (ignored for embedding dirs)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int | None = None  # images per forward pass; None: the per-device default of extract
    # --- checks
    allow_tta_mismatch: bool = False  # accept test embeddings made with another --tta than training


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

def is_embedding_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


def _extraction_weights(trained: dict) -> str | None:
    """ExtractConfig.weights that reproduce the training embeddings: an explicit `weights`
    entry, "random" for random init, an existing file, else None (offline auto-resolution;
    the fingerprint check afterwards catches any difference)."""
    if trained.get("weights"):
        return str(trained["weights"])
    source = trained.get("weights_source")
    if not source:
        return None
    if str(source).lower().startswith("random"):
        return "random"
    return str(source) if Path(str(source)).is_file() else None


def _shaping(trained: dict) -> dict:
    """Everything that shapes the embedding as in training (modality, audio windows, pooling);
    device and batch size are this machine's business."""
    settings = trained.get("settings") or {}
    shaping = {key: settings[key] for key in ("modality", "window", "hop", "pool", "max_image_pixels", "tta", "layers")
               if key in settings}
    # The precision is part of the embeddings' fingerprint: the training one, as resolved then.
    precision = (trained.get("fingerprint") or {}).get("precision")
    if precision:
        shaping["precision"] = precision
    return shaping


def cache_dir(source: str, trained: dict, run_dir: Path) -> Path:
    """Where a raw input is extracted: named by the content fingerprint of its listing (ids and
    each file's `file_fingerprint`) and the extraction settings, never by the folder's name alone,
    so other files under the same name get their own extraction and the same files reuse theirs."""
    from pipelines.chain.chain import listing_fingerprint

    shaping = _shaping(trained)
    listed = listing_fingerprint(source, shaping.get("modality", "auto"))
    key = {"listing": listed, "backbone": trained.get("backbone"), "weights": _extraction_weights(trained),
           "weights_sha256": (trained.get("fingerprint") or {}).get("weights_sha256"), "shaping": shaping}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(source).stem or 'test'}-{trained.get('backbone')}")
    return run_dir / TEST_EMBEDDINGS_DIR / f"{stem}-{digest}"


def _complete_extraction(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_NAME).read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def extract_raw(source: str, trained: dict, run_dir: Path, config: PredictConfig, notify: Progress,
                extract_progress=None) -> str:
    """Run `olymp extract` on a raw input with the backbone/weights the run was trained on, into
    a cache keyed by the input files' content (a complete one is reused without extracting);
    `extract_progress` gets the runner's ExtractProgress events (the CLI draws a bar)."""
    from pipelines.extract.config import ExtractConfig
    from pipelines.extract.runner import run_extraction

    backbone = trained.get("backbone")
    if not backbone:
        raise InputError(
            f"the run's training embeddings ({trained.get('path')}) do not record a backbone; "
            f"extract {source} yourself with olymp extract and pass that directory"
        )
    output = cache_dir(source, trained, run_dir)
    # The same files under another name (a folder, then the same files piped on stdin) match too.
    output = next((found for found in sorted(output.parent.glob(f"*-{output.name.rsplit('-', 1)[-1]}"))
                   if _complete_extraction(found)), output)
    if _complete_extraction(output):
        notify("info", f"{source}: same files as an earlier predict, reusing {output}")
    else:
        notify("info", f"extracting {source} with {backbone} -> {output}")
        run_extraction(
            ExtractConfig(
                inputs=str(source),
                output=str(output),
                backbone=backbone,
                weights=_extraction_weights(trained),
                device=config.device,
                batch_size=config.batch_size,
                **_shaping(trained),
            ),
            on_progress=extract_progress,
        )
    if output.is_dir():
        os.utime(output)  # marks it recently used for prune_caches
    return str(output)


def prune_caches(run_dir: Path, keep: int, used: list[str]) -> None:
    """Keep the `keep` most recently used raw-input extractions (and stdin listings) of a run,
    the ones in `used` always among them, and delete the rest: repeated predicts on changing test
    sets do not pile up, while switching between a few test sets stays cheap."""
    import shutil

    root = run_dir / TEST_EMBEDDINGS_DIR
    kept = {Path(p).resolve() for p in used}
    for entries in ([p for p in root.glob("*") if p.is_dir() and p.name != LISTINGS_DIR],
                    list((root / LISTINGS_DIR).glob("stdin-*.csv"))):
        in_use = sum(p.resolve() in kept for p in entries)
        others = sorted((p for p in entries if p.resolve() not in kept), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for stale in others[max(0, keep - in_use):]:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


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


def _show(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


def check_fingerprints(run: dict, manifests: list[dict], dirs: list[str], allow_tta_mismatch: bool = False,
                       notify: Progress | None = None) -> None:
    """Refuse test embeddings made differently from the training ones, naming both values."""
    for entry, manifest, path in zip(run["embeddings"], manifests, dirs):
        want, got = fingerprint(entry["fingerprint"]), fingerprint(manifest)  # defaults fill older manifests
        unknown = unrecorded_fields(entry["fingerprint"])  # an older run recorded no precision
        if notify and any(got.get(key) is not None for key in unknown):
            notify("warning", f"{entry['path']}: the run does not record {', '.join(sorted(unknown))}; "
                              f"{path} is used with {', '.join(f'{k} {got.get(k)}' for k in sorted(unknown) if got.get(k) is not None)}")
        if want.get("tta") != got.get("tta"):
            message = (f"{path} was extracted with --tta {got.get('tta')}, the training embeddings with "
                       f"--tta {want.get('tta')}")
            if not allow_tta_mismatch:
                raise MismatchError(f"{message}; re-extract the test set with --tta {want.get('tta')}, "
                                    "or pass --allow-tta-mismatch to predict anyway")
            if notify:
                notify("warning", f"{message} (allowed by --allow-tta-mismatch)")
        diffs = [
            f"{key}: training {_show(want.get(key))}, test {_show(got.get(key))}"
            for key in FINGERPRINT_FIELDS
            if key != "tta" and key not in unknown and want.get(key) != got.get(key)
        ]
        if diffs:
            raise MismatchError(
                f"{path} was not made like the training embeddings ({entry['path']}): {'; '.join(diffs)}; "
                f"re-extract the test set with: olymp extract TEST_INPUTS -o TEST_DIR --backbone {want.get('backbone')}"
            )


# --------------------------------------------------------------------------- predictions

def _load_transforms(run_dir: Path, run: dict) -> list[FeatureTransform | None]:
    files = (run.get("features") or {}).get("transforms")
    if not files:
        return [None] * int(run.get("folds", 0) or 0)
    return [_guarded(run_dir / name, lambda path=run_dir / name: FeatureTransform.load(path)) for name in files]


def _guarded(path: Path | str, read):
    """read(), with any failure to read a run's file turned into one line naming it (the heads'
    and numpy's own errors are many and differ by format)."""
    try:
        return read()
    except OlympError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file fails in its reader's own way
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise InputError(f"{path} cannot be read ({reason}); {REBUILD}") from None


def lightgbm_text_problem(text: str) -> str | None:
    """Why a LightGBM text model is not whole, or None. LightGBM's own parser crashes the process
    (no exception) on a file cut short, so a cut is caught here first: a whole model ends with its
    parameters and a parseable pandas_categorical line."""
    if not text.startswith("tree\n"):
        return "not a LightGBM text model"
    sizes = re.search(r"^tree_sizes=(.*)$", text, re.MULTILINE)
    if "\nend of trees\n" not in text or sizes is None or len(sizes.group(1).split()) != text.count("\nTree="):
        return "cut short in its trees"
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    if "\nend of parameters\n" not in text or not last.startswith("pandas_categorical:"):
        return "cut short after its trees"
    try:
        json.loads(last.split(":", 1)[1])
    except ValueError:
        return "cut short in its last line"
    return None


def _check_lightgbm_file(path: Path) -> None:
    """A LightGBM model file (text, or multilabel's JSON list of texts) checked before LightGBM reads it."""
    try:
        text = path.read_text()
        texts = [text] if path.suffix == ".txt" else [t for t in json.loads(text)["models"] if t is not None]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} cannot be read ({type(error).__name__}); {REBUILD}") from None
    for model_text in texts:
        problem = lightgbm_text_problem(model_text) if isinstance(model_text, str) else "not a LightGBM text model"
        if problem:
            raise InputError(f"{path} cannot be read ({problem}); {REBUILD}")


def average_folds(run_dir: Path, run: dict, X: np.ndarray) -> np.ndarray:
    """Mean of the fold (x seed) models' predictions (probabilities or values), each model fed
    the features through its fold's fitted transform (--normalize/--pca), as in training."""
    check_run_files(run_dir, run)
    try:
        head_cls = get_head(run["head"]["name"])
    except (KeyError, TypeError, OlympError):
        raise InputError(f"{run_dir / RUN_MANIFEST} names no known head; {REBUILD}") from None
    n_classes = len(run["classes"]) if run.get("classes") else 0
    transforms = _load_transforms(run_dir, run)
    model_folds = run.get("model_folds") or list(range(len(run["models"])))  # older runs: one model per fold
    features: dict[int, np.ndarray] = {}
    total = None
    for model_file, fold in zip(run["models"], model_folds):
        path = run_dir / model_file
        if fold not in features:
            transform = transforms[fold] if isinstance(fold, int) and 0 <= fold < len(transforms) else None
            features[fold] = X if transform is None else transform.transform(X)
        if head_cls.name == "lgbm":
            _check_lightgbm_file(path)
        files = model_companions(run_dir, model_file)  # mlp: the weights and their architecture JSON
        shown = path if len(files) == 1 else f"{path} or {Path(files[1]).name}"
        model = _guarded(shown, lambda path=path: head_cls.load(path, run["task"], n_classes))
        pred = _guarded(path, lambda: np.asarray(model.predict(features[fold]), dtype=np.float64))
        expected = (len(X), n_classes) if n_classes else (len(X),)
        if pred.shape != expected or not np.isfinite(pred).all():
            raise InputError(f"{path} predicts {pred.shape} values (some not finite) where {expected} were due; {REBUILD}")
        total = pred if total is None else total + pred
    return total / len(run["models"])


def _prior_rows(run: dict, n: int) -> np.ndarray:
    if isinstance(run["prior"], list):  # class frequencies or per-label rates
        return np.tile(np.asarray(run["prior"], dtype=np.float64), (n, 1))
    return np.full(n, float(run["prior"]))


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
    raise MismatchError(
        f"the sample submission's columns ({', '.join(columns)}) are not the run's classes "
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
    raise MismatchError(
        f"the sample submission's columns ({', '.join(columns)}) are not the run's labels "
        f"({', '.join(classes)}); pass the contest's sample file, or drop --sample-submission"
    )


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


@dataclass
class RunPrediction:
    ids: np.ndarray  # every id any test set knows (embedded, or recorded as failed), sorted
    pred: np.ndarray  # (N, K) or (N,): the models' mean where `usable`, the training prior elsewhere
    usable: np.ndarray  # bool (N,): predicted by the models
    notes: list[str]  # why some ids got the prior
    dirs: list[str]  # test embedding dirs used
    n_models: int


def predict_run(
    run_dir: Path, run: dict, dirs: list[str], allow_tta_mismatch: bool = False, notify: Progress | None = None
) -> RunPrediction:
    """One train-head run's fold models on test embedding dirs (one per training set, in order)."""
    sets = load_sets(dirs)
    check_fingerprints(run, [emb.manifest for emb in sets], dirs, allow_tta_mismatch, notify)

    # Every id any test set knows (embedded, or recorded as failed) gets a row.
    failed = {row["id"] for path in dirs for row in read_errors(path)}
    all_ids = np.asarray(sorted(set().union(*(emb.ids.tolist() for emb in sets), failed)), dtype=object)
    positions = [pd.Index(emb.ids).get_indexer(all_ids) for emb in sets]
    usable = np.logical_and.reduce([pos >= 0 for pos in positions])
    rows = np.flatnonzero(usable)
    X = np.hstack([emb.vectors[pos[rows]] for emb, pos in zip(sets, positions)]).astype(np.float32, copy=False)
    if X.shape[1] != run["n_features"]:
        raise MismatchError(
            f"test features have {X.shape[1]} columns, training had {run['n_features']}; "
            "pass the same embedding sets as training, in the same order"
        )
    pred = _prior_rows(run, len(all_ids))
    if len(rows):
        pred[rows] = average_folds(run_dir, run, X)

    notes = []
    n_failed = sum(i in failed for i in all_ids[~usable])
    n_missing = int((~usable).sum()) - n_failed
    if n_failed:
        notes.append(f"{n_failed} test ids failed extraction (listed in _errors.csv); they get the training prior")
    if n_missing:
        notes.append(f"{n_missing} test ids lack an embedding in some test set; they get the training prior")
    return RunPrediction(all_ids, pred, usable, notes, dirs, len(run["models"]))


def load_predictor(run_dir: Path) -> dict:
    """The manifest of a train-head run or of a blend (both predict the same way)."""
    from pipelines.ensemble.blenddir import BLEND_KIND, load_blend, manifest_kind

    if manifest_kind(run_dir) == BLEND_KIND:  # a corrupt manifest.json: one line naming it
        return load_blend(run_dir)
    return load_run(run_dir)


def write_submission(frame: pd.DataFrame, output: Path) -> None:
    """The CSV written whole or not at all (temp + rename): a kill or a full disk leaves the
    previous submission as it was."""
    output.parent.mkdir(parents=True, exist_ok=True)
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
        from pipelines.ensemble.blend import predict_blend

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
