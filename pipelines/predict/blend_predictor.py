"""Blend prediction: each member run on its test embeddings, combined with the blend's weights
(the blend directory written by pipelines.ensemble.blend; its format in pipelines.train.blenddir)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError, MismatchError
from pipelines.data.embeddings import fingerprint, load_manifest, unrecorded_fields
from pipelines.ensemble.blend import read_run
from pipelines.predict.run_predictor import Progress, RunPrediction, _prior_rows, extract_raw, is_embedding_dir, predict_run
from pipelines.train.blenddir import member_dir


def _key(recorded: dict, ignore_tta: bool = False, ignore: frozenset = frozenset()) -> str:
    """How embeddings were made, as one comparable string; `fingerprint` fills fields that older
    manifests lack (tta), so an old run still matches test dirs made the same way."""
    skip = set(ignore) | ({"tta"} if ignore_tta else set())
    made = {k: v for k, v in fingerprint(recorded).items() if k not in skip}
    return json.dumps(made, sort_keys=True)


def _match_dirs(member: Path, run: dict, candidates: dict[str, dict], allow_tta_mismatch: bool = False) -> list[str]:
    """For each training embedding set of a member, the one given test dir made the same way
    (with --allow-tta-mismatch, the same way but for --tta; predict_run then warns)."""
    chosen = []
    for entry in run["embeddings"]:
        unknown = unrecorded_fields(entry["fingerprint"])  # older runs did not record precision
        want = _key(entry["fingerprint"], allow_tta_mismatch, unknown)
        hits = [path for path, manifest in candidates.items() if _key(manifest, allow_tta_mismatch, unknown) == want]
        backbone = entry["fingerprint"].get("backbone")
        if not hits:
            raise MismatchError(
                f"blend member {member} needs test embeddings made like {entry['path']} (backbone {backbone}) "
                f"and none of the given dirs is; pass that test embedding dir too "
                f"(olymp extract TEST_INPUTS -o TEST_DIR --backbone {backbone})"
            )
        if len(hits) > 1:
            raise MismatchError(
                f"{len(hits)} given dirs ({', '.join(hits)}) match blend member {member}'s {backbone} embeddings; "
                "pass one test embedding dir per backbone"
            )
        chosen.append(hits[0])
    return chosen


def predict_blend(blend_dir: Path, blend: dict, config, notify: Progress, extract_progress=None):
    """Each member run on its test embeddings (picked from the given dirs by fingerprint, or
    extracted once per backbone from one raw input), combined with the blend's weights. Ids
    some member cannot predict get the training prior."""
    members = [(member_dir(blend_dir, m), m["weight"]) for m in blend["members"] if m["weight"] > 0]
    runs = [read_run(path) for path, _ in members]
    inputs = [str(p) for p in config.inputs]  # checked by predict (check_test_inputs)
    if len(inputs) == 1 and not is_embedding_dir(inputs[0]):
        extracted: dict[str, str] = {}  # one extraction per distinct training embedding
        member_dirs = []
        for run in runs:
            for entry in run["embeddings"]:
                if _key(entry["fingerprint"]) not in extracted:
                    extracted[_key(entry["fingerprint"])] = extract_raw(inputs[0], entry, blend_dir, config, notify, extract_progress)
            member_dirs.append([extracted[_key(entry["fingerprint"])] for entry in run["embeddings"]])
    else:
        raw = [p for p in inputs if not is_embedding_dir(p)]
        if raw:
            raise InputError(
                f"{raw[0]} is not an embedding dir; pass test embedding dirs only, or one raw input folder/listing"
            )
        candidates = {path: load_manifest(path) for path in inputs}
        member_dirs = [
            _match_dirs(path, run, candidates, config.allow_tta_mismatch) for (path, _), run in zip(members, runs)
        ]

    results = [
        predict_run(path, run, dirs, config.allow_tta_mismatch, notify)
        for (path, _), run, dirs in zip(members, runs, member_dirs)
    ]
    all_ids = np.asarray(sorted(set().union(*(r.ids.tolist() for r in results))), dtype=object)
    usable = np.ones(len(all_ids), dtype=bool)
    positions = []
    for result in results:
        pos = pd.Index(result.ids).get_indexer(all_ids)
        usable &= pos >= 0
        usable[pos >= 0] &= result.usable[pos[pos >= 0]]
        positions.append(pos)
    pred = _prior_rows(blend, len(all_ids))
    rows = np.flatnonzero(usable)
    if len(rows):
        pred[rows] = sum(weight * r.pred[pos[rows]] for (_, weight), r, pos in zip(members, results, positions))
    notes = list(dict.fromkeys(note for r in results for note in r.notes))
    absent = int(np.logical_or.reduce([pos < 0 for pos in positions]).sum())
    if absent:
        notes.append(f"{absent} test ids are missing from some member's test embeddings; they get the training prior")
    used = sorted({d for dirs in member_dirs for d in dirs})
    return RunPrediction(all_ids, pred, usable, notes, used, sum(r.n_models for r in results))
