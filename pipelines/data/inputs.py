"""Turn the user's INPUTS (a folder or a CSV/Parquet listing) into a sorted list of (id, path).

A folder is walked recursively, following symlinked folders. What cannot be reached is not
dropped: with `with_unreachable=True` a symlink loop (a folder link back to one of its own
ancestors, or a link that resolves to itself), a dangling link and an unreadable folder each
become an item with `error` set, which extract records as an error row (so predict still gives
its id a row). Hidden names (starting with ".") are skipped, as before.
"""

from __future__ import annotations

import errno
import stat
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.errors import InputError
from pipelines.core.hashing import file_fingerprint, fingerprint_of_fingerprints

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
        suffixes = [Path(item.path).suffix.lower() for item in _from_folder(source, None, False)]
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
    error: str | None = None  # set when the path cannot be reached (recorded, never decoded)


def list_inputs(inputs: str | Path, extensions=IMAGE_EXTENSIONS, with_unreachable: bool = False) -> list[InputItem]:
    """Inputs sorted by id: a deterministic order makes resume, `--limit` and shards stable.

    with_unreachable: also list what a folder walk could not reach (items with `error`).
    """
    source = Path(inputs)
    if source.is_dir():
        items = _from_folder(source, extensions, with_unreachable)
    elif source.is_file() and source.suffix.lower() in LISTING_SUFFIXES:
        items = _from_listing(source)
    elif source.exists():
        raise InputError(
            f"{source} is neither a folder nor a .csv/.parquet listing; "
            "pass a folder of files or a listing with `id` and `path` columns"
        )
    else:
        raise InputError(f"{source} does not exist; pass a folder or a CSV/Parquet listing")
    if not any(item.error is None for item in items) and not (with_unreachable and items):
        wanted = ", ".join(sorted(extensions))
        raise InputError(f"no input files found in {source} (looked for {wanted})")
    items.sort(key=lambda item: item.id)
    _refuse_duplicate_ids(items, source)
    return items


def _from_folder(folder: Path, extensions, with_unreachable: bool) -> list[InputItem]:
    """Walk `folder` (symlinked folders followed, loops cut); extensions None: every file with a suffix."""
    items: list[InputItem] = []

    def wanted(name: str) -> bool:
        suffix = Path(name).suffix.lower()
        return bool(suffix) if extensions is None else suffix in extensions

    def unreachable(path: Path, reason: str, is_folder: bool) -> None:
        if with_unreachable:
            relative = path.relative_to(folder)
            # id as for a file: the relative path without its extension; a folder keeps its name whole
            item_id = (relative if is_folder else relative.with_suffix("")).as_posix()
            items.append(InputItem(item_id, str(path), reason))

    def visit(directory: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            if directory != folder:
                unreachable(directory, f"unreadable folder ({error.strerror or error}); fix its permissions "
                                       f"(chmod -R u+rX '{directory}') and re-run", True)
                return
            raise InputError(f"cannot read {folder} ({error.strerror or error}); fix its permissions") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                target = os.stat(path)  # follows links
            except OSError as error:
                if entry.is_symlink() and (wanted(entry.name) or not Path(entry.name).suffix):
                    if error.errno == errno.ELOOP:
                        reason = "symlink loop (the link resolves to itself); point it at a real file or remove it"
                    else:
                        reason = (f"dangling symlink (its target {os.readlink(path)} does not exist); "
                                  "point it at a real file or remove it")
                    unreachable(path, reason, not Path(entry.name).suffix)
                continue
            if stat.S_ISDIR(target.st_mode):
                key = (target.st_dev, target.st_ino)
                if key in ancestors:
                    unreachable(path, f"symlink loop (links back to {os.path.realpath(path)}, a folder above it); "
                                      "remove the link", True)
                    continue
                visit(path, ancestors | {key})
            elif stat.S_ISREG(target.st_mode) and wanted(entry.name):
                # id = path relative to the folder without its extension: "cats/001.jpg" -> "cats/001"
                item_id = path.relative_to(folder).with_suffix("").as_posix()
                items.append(InputItem(item_id, str(path.resolve())))

    root = os.stat(folder)
    visit(folder, frozenset({(root.st_dev, root.st_ino)}))
    return items


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


def listing_fingerprint(inputs: str, modality: str) -> dict:
    """What the input files are: their ids and content fingerprints (`file_fingerprint`: size,
    mtime_ns, BLAKE2b of the first and last 64 KiB), combined by `fingerprint_of_fingerprints`.
    A file replaced by another of the same size changes it; so does a touched or copied file
    (re-extracting is cheap, a stale embedding is not)."""
    resolved = infer_modality(inputs, modality)
    items = list_inputs(inputs, extensions_for(resolved))
    parts = []
    for item in items:
        try:
            parts.append((item.id, file_fingerprint(item.path)))
        except OSError as error:  # unreadable or missing: extract's to report; it still changes the key
            parts.append((item.id, f"unreadable: {type(error).__name__}"))
    return {"files": len(items), "fingerprint": fingerprint_of_fingerprints(parts)}
