"""Which spelling of a file's id a labels (or sample submission) file uses, and the match.

An input's id is its path relative to the input root without extension
(`001 - Dog bark/1-100032-A`). Real labels files key rows other ways: by the bare stem
(`1-100032-A`, ESC-50), by the file name (`IMG_5507.jpg`, Kaggle), or by the relative path with
its extension. `match_ids` tries each form, picks the one that matches every labelled row (the
first of FORMS when several do; else the one that matches most), and refuses a form that maps
one labelled key to several files (the same stem in two folders). `spell` writes test ids in the
chosen form, so a submission uses the labels file's own spelling.

The extension of each id comes from re-listing the inputs an embedding set was extracted from
(`file_extensions`); when they are gone, a label's known media extension is stripped instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.core.errors import InputError
from pipelines.data.inputs import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, extensions_for, list_inputs

# In order of preference when several forms match every row (they agree on a flat folder).
FORMS = ("path", "path+ext", "stem", "stem+ext")
DESCRIPTIONS = {
    "path": "the relative path without extension",
    "path+ext": "the relative path with extension",
    "stem": "the bare file stem",
    "stem+ext": "the file name with extension",
}
FROM_FOLDERS = "path"  # --labels-from-folders: the ids as extract wrote them


def _media_extensions() -> frozenset[str]:
    return IMAGE_EXTENSIONS | AUDIO_EXTENSIONS


def _stem(file_id: str) -> str:
    return PurePosixPath(file_id).name


def spell(form: str, file_id: str, ext: str | None) -> str:
    """`file_id` (relative path without extension) written in `form`; `ext` like ".jpg"."""
    base = file_id if form.startswith("path") else _stem(file_id)
    return base + (ext or "") if form.endswith("+ext") else base


def strip_media_extension(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return name[: -len(suffix)] if suffix and suffix.lower() in _media_extensions() else name


def file_extensions(manifest: dict, ids, errors: list[dict] = ()) -> dict[str, str] | None:
    """id -> extension (".ogg") of the files an embedding set was made from, re-listed from the
    manifest's `inputs` (folder or listing), plus the paths of failed inputs; None when the
    inputs are gone or no longer hold every one of `ids`."""
    found = {row["id"]: PurePosixPath(row["path"]).suffix for row in errors if row.get("path")}
    source = manifest.get("inputs")
    if source and Path(source).exists():
        try:
            items = list_inputs(source, extensions_for(manifest.get("modality", "image")))
        except (InputError, OSError, ValueError):
            items = []
        found.update({item.id: Path(item.path).suffix for item in items})
    ids = list(ids)
    if not found or any(str(i) not in found for i in ids):
        return None
    return found


@dataclass
class IdMatch:
    form: str  # one of FORMS
    positions: np.ndarray  # per label id: index into the file ids, -1 where none matches
    n_matched: int

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.form]


def _keys(form: str, file_ids: list[str], exts: dict[str, str] | None) -> list[str]:
    if form.endswith("+ext") and exts is None:  # extension unknown: compare without it
        return [spell(form.removesuffix("+ext"), i, None) for i in file_ids]
    return [spell(form, i, None if exts is None else exts.get(i)) for i in file_ids]


def _label_keys(form: str, label_ids: list[str], exts: dict[str, str] | None) -> list[str]:
    if form.endswith("+ext") and exts is None:
        return [strip_media_extension(i) for i in label_ids]
    return label_ids


def match_ids(
    label_ids, file_ids, extensions: Callable[[], dict[str, str] | None], labels_name: str, files_name: str,
    fix: str = "key the labels by one of them, or pass --id-col with the column that names the files",
) -> IdMatch:
    """The form of `label_ids` against `file_ids` (extract's ids) and each label's file position.
    `extensions` is called only when a form with extension is needed."""
    label_ids = [str(i) for i in label_ids]
    file_ids = [str(i) for i in file_ids]
    exts: dict[str, str] | None = None
    looked_up = False
    best = None
    for form in FORMS:
        if form.endswith("+ext") and not looked_up:
            exts, looked_up = extensions(), True
        index: dict[str, list[int]] = {}
        for position, key in enumerate(_keys(form, file_ids, exts)):
            index.setdefault(key, []).append(position)
        wanted = _label_keys(form, label_ids, exts)
        hits = [index.get(key) for key in wanted]
        n = sum(hit is not None for hit in hits)
        if best is None or n > best[1]:
            best = (form, n, hits, wanted)
        if n == len(label_ids):
            break
    form, n, hits, wanted = best
    if n == 0:
        raise InputError(
            f"no id of {labels_name} matches a file in {files_name}: label ids look like "
            f"'{label_ids[0] if label_ids else '-'}', file ids like '{file_ids[0] if file_ids else '-'}'; "
            f"olymp tried the relative path and the bare stem, each with and without extension; {fix}"
        )
    shared = {key: hit for key, hit in zip(wanted, hits) if hit is not None and len(hit) > 1}
    if shared:
        key, hit = next(iter(shared.items()))
        n_files = sum(len(h) for h in shared.values())
        raise InputError(
            f"{labels_name} is keyed by {DESCRIPTIONS[form]}, and {len(shared)} of its ids match "
            f"{n_files} files in different folders of {files_name} (e.g. '{key}': "
            f"{', '.join(repr(file_ids[p]) for p in hit[:2])}); key the labels by the relative path "
            f"(e.g. '{file_ids[hit[0]]}') or rename the files"
        )
    positions = np.asarray([-1 if hit is None else hit[0] for hit in hits], dtype=np.int64)
    return IdMatch(form, positions, n)


def spell_all(form: str, file_ids, exts: dict[str, str] | None, fallback_ext: str | None, where: str) -> np.ndarray:
    """Test ids written in the run's form, refusing two files that would get one id."""
    if form.endswith("+ext") and exts is None and fallback_ext is None:
        raise InputError(
            f"the run's labels name files with their extension, and the files of {where} cannot be listed "
            "again to learn theirs; pass --sample-submission with the contest's sample file"
        )
    spelled = [spell(form, i, (exts or {}).get(i, fallback_ext)) for i in file_ids]
    counts = Counter(spelled)
    repeated = [key for key, count in counts.items() if count > 1]
    if repeated:
        n_files = sum(counts[key] for key in repeated)
        raise InputError(
            f"the run's labels use {DESCRIPTIONS[form]}, and {len(repeated)} ids of {where} would name "
            f"{n_files} files in different folders (e.g. '{repeated[0]}'); pass --sample-submission, "
            "or give the test files distinct names"
        )
    return np.asarray(spelled, dtype=object)


def common_extension(label_ids, form: str) -> str | None:
    """The one extension every label id carries (forms with extension), else None."""
    if not form.endswith("+ext"):
        return None
    suffixes = {PurePosixPath(str(i)).suffix for i in label_ids}
    return next(iter(suffixes)) if len(suffixes) == 1 and "" not in suffixes else None


def folder_labels(file_ids, where: str) -> np.ndarray:
    """--labels-from-folders: each id's parent folder name is its class (as ImageFolder does)."""
    parents = [PurePosixPath(str(i)).parent.name for i in file_ids]
    loose = [i for i, parent in zip(file_ids, parents) if not parent]
    if loose:
        raise InputError(
            f"--labels-from-folders: {len(loose)} files of {where} are not in a class folder (e.g. '{loose[0]}'); "
            "put each file in a folder named after its class (train/cat/001.jpg), or pass --labels"
        )
    return np.asarray(parents, dtype=object)
