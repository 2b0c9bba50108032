"""Turn the user's INPUTS (a folder or a CSV/Parquet listing) into a sorted list of (id, path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InputError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)
# What soundfile (libsndfile 1.2) streams, plus what librosa may decode through audioread.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aif", ".aiff", ".au", ".caf"})
LISTING_SUFFIXES = (".csv", ".parquet", ".pq")
MODALITIES = ("auto", "image", "audio")


def extensions_for(modality: str) -> frozenset[str]:
    """The file extensions a folder of `modality` inputs is listed by."""
    return AUDIO_EXTENSIONS if modality == "audio" else IMAGE_EXTENSIONS


def infer_modality(inputs: str | Path, requested: str = "auto") -> str:
    """image or audio: as asked, else from the file extensions found (the majority wins)."""
    if requested not in MODALITIES:
        raise InputError(f"unknown modality {requested!r}; use auto, image or audio")
    if requested != "auto":
        return requested
    source = Path(inputs)
    if source.is_dir():
        suffixes = [p.suffix.lower() for p in source.rglob("*") if p.suffix]
    elif source.is_file() and source.suffix.lower() in LISTING_SUFFIXES:
        suffixes = [Path(item.path).suffix.lower() for item in _from_listing(source)]
    else:
        return "image"  # list_inputs will explain what is wrong with the path
    images = sum(s in IMAGE_EXTENSIONS for s in suffixes)
    sounds = sum(s in AUDIO_EXTENSIONS for s in suffixes)
    return "audio" if sounds > images else "image"


@dataclass(frozen=True)
class InputItem:
    id: str  # the row key of the embedding dataset
    path: str  # absolute path of the file to decode


def list_inputs(inputs: str | Path, extensions=IMAGE_EXTENSIONS) -> list[InputItem]:
    """Inputs sorted by id: a deterministic order makes resume, `--limit` and shards stable."""
    source = Path(inputs)
    if source.is_dir():
        items = _from_folder(source, extensions)
    elif source.is_file() and source.suffix.lower() in LISTING_SUFFIXES:
        items = _from_listing(source)
    elif source.exists():
        raise InputError(
            f"{source} is neither a folder nor a .csv/.parquet listing; "
            "pass a folder of files or a listing with `id` and `path` columns"
        )
    else:
        raise InputError(f"{source} does not exist; pass a folder or a CSV/Parquet listing")
    if not items:
        wanted = ", ".join(sorted(extensions))
        raise InputError(f"no input files found in {source} (looked for {wanted})")
    items.sort(key=lambda item: item.id)
    _refuse_duplicate_ids(items, source)
    return items


def _from_folder(folder: Path, extensions) -> list[InputItem]:
    items = []
    for path in folder.rglob("*"):
        if path.suffix.lower() in extensions and path.is_file() and not _hidden(path, folder):
            # id = path relative to the folder without its extension: "cats/001.jpg" -> "cats/001"
            item_id = path.relative_to(folder).with_suffix("").as_posix()
            items.append(InputItem(item_id, str(path.resolve())))
    return items


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _from_listing(listing: Path) -> list[InputItem]:
    import pandas as pd

    if listing.suffix.lower() == ".csv":
        frame = pd.read_csv(listing, dtype=str, keep_default_na=False)
    else:
        frame = pd.read_parquet(listing)
    if "path" not in frame.columns:
        raise InputError(
            f"{listing} has no `path` column (columns: {', '.join(map(str, frame.columns))}); "
            "a listing needs `path` (and optionally `id`) columns"
        )
    paths = [str(p) for p in frame["path"].tolist()]
    if "id" in frame.columns:
        ids = [str(i) for i in frame["id"].tolist()]
    else:  # same default as for folders: the path without its extension
        ids = [Path(p).with_suffix("").as_posix() for p in paths]
    base = listing.parent
    return [
        InputItem(item_id, str(path if Path(path).is_absolute() else (base / path).resolve()))
        for item_id, path in zip(ids, paths)
    ]


def _refuse_duplicate_ids(items: list[InputItem], source: Path) -> None:
    for previous, current in zip(items, items[1:]):
        if previous.id == current.id:
            raise InputError(
                f"id {current.id!r} appears twice in {source} ({previous.path}, {current.path}); "
                "ids must be unique: give the listing an `id` column or rename one file"
            )
