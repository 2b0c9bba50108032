"""A finetune run on raw test files: every fold's network, its probabilities averaged.

Each fold's network folder is extracted like a backbone (`extract --backbone RUN_DIR/fold-K`:
the network's pre-logits, with its own preprocessing, at its training resolution; audio through
its log-mel front end, clip = mean over windows), into RUN_DIR/test_embeddings keyed by the
files' content and the network's fingerprint, so a repeated predict reuses it and unreadable
files are recorded in _errors.csv (they get the training prior, as for a train-head run). The
network's classifier then turns the pre-logits into probabilities; the folds are averaged.
`--tta hflip` extracts the mirrored view too (mean of both pre-logits, i.e. of both logits, the
classifier being linear), allowed only where the network trained with horizontal flips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import ConfigError, InputError, MismatchError
from pipelines.data.embeddings import read_embeddings, read_errors
from pipelines.backbones.finetuned import check_linear_head, classify, load_network, network_fingerprint
from pipelines.train.finetunedir import FINETUNE_KIND, check_finetune_files
from pipelines.predict.config import PredictConfig
from pipelines.predict.run_predictor import Progress, RunPrediction, _prior_rows, extract_raw, is_embedding_dir

TTA_MODES = ("none", "hflip")


def check_tta(run_dir: Path, metas: list, tta: str) -> None:
    if tta not in TTA_MODES:
        raise ConfigError(f"unknown --tta {tta!r}; use one of {', '.join(TTA_MODES)}")
    if tta == "hflip":
        refused = [meta for meta in metas if not meta.hflip_tta_ok]
        if refused:
            why = "audio networks have no mirror view" if refused[0].modality == "audio" else "it trained without --hflip"
            raise ConfigError(f"--tta hflip: {run_dir} fold {refused[0].fold} is not flip-invariant ({why}); drop --tta")


def network_entry(folder: Path, meta, fingerprint: str, tta: str) -> dict:
    """The training-embeddings record extract_raw reads, for one fold's network."""
    settings = {"modality": meta.modality, "tta": tta}
    if meta.audio is not None:
        settings.update(window=meta.audio.window_seconds, tta="none")
    return {"backbone": str(folder), "path": str(folder), "weights": None,
            "fingerprint": {"weights_sha256": fingerprint}, "settings": settings}


def predict_finetune(run_dir: Path, run: dict, config: PredictConfig, notify: Progress,
                     extract_progress=None, inputs: list[str] | None = None) -> RunPrediction:
    """Every fold network of a finetune run on one raw test input (folder / listing), averaged."""
    assert run.get("kind") == FINETUNE_KIND
    inputs = [str(p) for p in (inputs if inputs is not None else config.inputs)]
    if len(inputs) != 1 or is_embedding_dir(inputs[0]):
        given = "an embedding dir" if any(is_embedding_dir(p) for p in inputs) else f"{len(inputs)} inputs"
        raise InputError(
            f"{run_dir} is a fine-tuned run: it predicts from the raw test files (one folder or listing), "
            f"not from {given}; e.g. olymp predict {run_dir} test/ -o submission.csv"
        )
    check_finetune_files(run_dir, run)
    loaded = [load_network(Path(run_dir) / name) for name in run["networks"]]
    metas = [meta for _, meta in loaded]
    check_tta(Path(run_dir), metas, config.tta)
    classes = [str(c) for c in run["classes"]]
    for (model, meta), name in zip(loaded, run["networks"]):
        if meta.classes != classes:
            raise MismatchError(f"{Path(run_dir) / name} outputs classes {meta.classes}, the run's are {classes}; "
                                "re-run olymp finetune with --overwrite")
        check_linear_head(model, meta)

    per_fold = []
    dirs = []
    for (model, meta), name in zip(loaded, run["networks"]):
        folder = Path(run_dir) / name
        fingerprint = network_fingerprint(folder)
        directory = extract_raw(inputs[0], network_entry(folder, meta, fingerprint, config.tta), Path(run_dir), config,
                                notify, extract_progress)
        embedded = read_embeddings(directory)
        if embedded.manifest.get("weights_sha256") != fingerprint:
            raise MismatchError(f"{directory} was not extracted with {folder}'s network; delete it and predict again")
        probabilities = classify(model, embedded.vectors) if len(embedded.ids) else np.zeros((0, len(classes)))
        failed = {row["id"] for row in read_errors(directory)}
        per_fold.append((embedded.ids, probabilities, failed))
        dirs.append(directory)

    all_ids = np.asarray(sorted(set().union(*(set(ids.tolist()) | failed for ids, _, failed in per_fold))), dtype=object)
    usable = np.ones(len(all_ids), dtype=bool)
    total = np.zeros((len(all_ids), len(classes)))
    for ids, probabilities, _ in per_fold:
        positions = pd.Index(ids).get_indexer(all_ids)
        usable &= positions >= 0
        total[positions >= 0] += probabilities[positions[positions >= 0]]
    pred = _prior_rows(run, len(all_ids))
    pred[usable] = total[usable] / len(per_fold)

    notes = []
    n_failed = int((~usable).sum())
    if n_failed:
        notes.append(f"{n_failed} test files could not be read (listed in _errors.csv); they get the training prior")
    return RunPrediction(all_ids, pred, usable, notes, list(dict.fromkeys(dirs)), len(per_fold))
