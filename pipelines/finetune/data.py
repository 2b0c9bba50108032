"""The labelled raw files of a finetune run: listing + labels CSV -> items, target, groups.

Inputs are listed as extract lists them (pipelines.data.inputs), labels read and matched as
train-head reads and matches them (pipelines.train.train / pipelines.data.ids), so a fine-tuned
run and a head run on the same files and labels hold the same ids, and with the same seed and
groups the same folds. Every file is decoded once up front: what cannot be read becomes an error
row (id, path, error), recorded in the run's errors.csv and left out, as extract does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.errors import InputError
from pipelines.data.ids import FROM_FOLDERS, common_extension, folder_labels, match_ids
from pipelines.data.tasks import Target
from pipelines.data.inputs import InputItem, extensions_for, infer_modality, list_inputs
from pipelines.finetune.config import FinetuneConfig
from pipelines.data.labels import read_labels_noted, target_from_labels
from pipelines.data.sampling import subsample_rows

MAX_IMAGE_PIXELS = 178_956_970  # PIL's own decompression-bomb limit


@dataclass
class LabelledFiles:
    items: list[InputItem]  # the labelled, readable files, in label order
    label_ids: np.ndarray  # object array: each file's id as the labels spell it (train-head's ids)
    target: Target
    groups: np.ndarray | None  # object array, or None without --group-col
    modality: str  # image | audio
    errors: list[dict]  # id, path, error of the labelled files that could not be read
    notes: list[str]  # rows left out and why
    id_form: str = FROM_FOLDERS  # how the labels spell a file's id
    id_extension: str | None = None

    @property
    def ids(self) -> np.ndarray:
        return self.label_ids


def load_labelled_files(config: FinetuneConfig, probe: bool = True) -> LabelledFiles:
    """The labelled files with their target; unreadable ones (decoded once here) left out."""
    modality = infer_modality(config.inputs, config.modality)
    items = list_inputs(config.inputs, extensions_for(modality), with_unreachable=True)
    item_ids = [item.id for item in items]
    notes: list[str] = []
    if config.labels_from_folders:
        classes = folder_labels(item_ids, config.inputs)
        labels = pd.DataFrame({config.id_col: item_ids, config.target_col: classes})
        positions, form, extension = np.arange(len(items)), FROM_FOLDERS, None
        label_ids = np.asarray(item_ids, dtype=object)
    else:
        labels_path = Path(config.labels)
        labels, label_notes = read_labels_noted(labels_path, config.id_col, config.target_col, config.group_col)
        notes.extend(label_notes)
        label_ids = labels[config.id_col].to_numpy(dtype=object)
        extensions = {item.id: Path(item.path).suffix for item in items}
        match = match_ids(label_ids, item_ids, lambda: extensions, labels_path.name, config.inputs)
        positions, form = match.positions, match.form
        extension = common_extension(label_ids, form)
        n_missing = int((positions < 0).sum())
        if n_missing:
            example = label_ids[positions < 0][0]
            notes.append(f"{n_missing} labelled ids have no file in {config.inputs} (e.g. '{example}', "
                         f"matched as {match.description}); they are left out")
    rows = np.flatnonzero(positions >= 0)
    chosen = [items[p] for p in positions[rows]]
    if config.limit is not None and config.limit < len(rows):
        raw = labels[config.target_col].to_numpy(dtype=object)[rows]
        keep = subsample_rows(pd.factorize(raw)[0], config.limit, config.seed, True)
        notes.append(f"--limit {config.limit}: training on a stratified subsample of {config.limit} of {len(rows)} rows (seed-fixed)")
        rows, chosen = rows[keep], [chosen[i] for i in keep]
    errors = [{"id": item.id, "path": item.path, "error": item.error} for item in chosen if item.error]
    if probe:
        errors += [row for row in (probe_file(item, modality) for item in chosen if not item.error) if row]
    failed = {row["id"] for row in errors}
    if failed:
        notes.append(f"{len(failed)} labelled files could not be read (e.g. '{errors[0]['id']}': {errors[0]['error']}); "
                     "they are left out (see errors.csv in the run)")
    spelled = {item.id: str(label_ids[row]) for item, row in zip(chosen, rows)}
    for row in errors:  # error rows keyed as the labels spell them, like every other output
        row["id"] = spelled.get(row["id"], row["id"])
    readable = np.asarray([item.id not in failed for item in chosen], dtype=bool)
    rows, chosen = rows[readable], [item for item, ok in zip(chosen, readable) if ok]
    if not chosen:
        raise InputError(f"no labelled file of {config.inputs} could be read; check the files and the labels' ids")
    target = target_from_labels(labels, rows, config.target_col, None, config.task)
    if not target.is_classification:
        raise InputError(f"finetune trains classifiers, and '{config.target_col}' is a {target.task} target "
                         f"({target.reason}); pass --task multiclass if its values are classes, or use "
                         "olymp extract + olymp train-head for regression")
    groups = None if config.group_col is None else labels[config.group_col].to_numpy(dtype=object)[rows]
    return LabelledFiles(chosen, np.asarray([str(i) for i in label_ids[rows]], dtype=object), target, groups, modality,
                         errors, notes, form, extension)


def probe_file(item: InputItem, modality: str) -> dict | None:
    """An error row when the file cannot be decoded, else None."""
    try:
        if modality == "audio":
            from pipelines.backbones.audio.logmel import MIN_SECONDS

            if len(read_clip(item.path, 16000)) < MIN_SECONDS * 16000:
                raise ValueError(f"clip shorter than {MIN_SECONDS:g} s")
        else:
            load_image(item.path)
        return None
    except Exception as error:  # any decode failure becomes a record, never a crash
        if modality == "audio":
            from pipelines.extract.readers.audio import describe
        else:
            from pipelines.extract.readers.image import describe
        return {"id": item.id, "path": item.path, "error": describe(error)}


def load_image(path: str):
    """8-bit RGB PIL image (extract's decoder: EXIF rotation, 16-bit and alpha handled)."""
    from pipelines.extract.readers.image import load_rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_rgb(path, MAX_IMAGE_PIXELS)


def read_clip(path: str, sample_rate: int) -> np.ndarray:
    """The whole clip, mono float32 at `sample_rate` (extract's decoder and resampler)."""
    from pipelines.extract.readers.audio import ClipStream

    blocks = list(ClipStream(path, sample_rate).blocks())
    clip = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if not len(clip):
        raise ValueError("empty audio (no samples)")
    return clip.astype(np.float32, copy=False)


def with_rows(data: LabelledFiles, rows: np.ndarray) -> LabelledFiles:
    """`data` cut to `rows` (positions)."""
    return replace(data, items=[data.items[i] for i in rows], label_ids=data.label_ids[rows],
                   target=replace(data.target, y=data.target.y[rows]),
                   groups=None if data.groups is None else data.groups[rows])
