"""The embedding dataset on disk: what `extract` writes and `train-head` / `predict` read.

Layout of an embedding directory (a Parquet dataset `pandas.read_parquet(dir)` reads directly;
pyarrow skips names starting with "_" or "."):

    part-00000.parquet ...   id: string, embedding: fixed_size_list<float32>[D],
                             file_fingerprint: string (the input file's content identity)
    _manifest.json           backbone, weights source + SHA-256, preprocessing, precision, D, versions, counts
    _errors.csv              id, path, error, file_fingerprint, attempts for every input not embedded
    _errors/                 per-part error records (the resumable source of _errors.csv)
    _extract.lock            pid and host of the extract writing the folder (empty when none is)

Every id appears exactly once across the committed parts and error files: a resume that
re-embeds an input (its file changed, or it failed before and is retried) first rewrites the
parts holding its old record without it (each part atomically), so readers never see a
superseded row; see pipelines/extract/runner.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.errors import InputError, first_line

MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "_errors.csv"
ERROR_PARTS_DIR = "_errors"
PART_GLOB = "part-*.parquet"
METADATA_KEY = b"olymp"  # Parquet key-value metadata: the JSON fingerprint of the producer
FORMAT_VERSION = 1

# Manifest fields that decide whether two embedding sets are interchangeable
# (train vs test, or a resumed run vs the original one).
FINGERPRINT_FIELDS = ("modality", "backbone", "weights_sha256", "preprocessing", "embedding_dim", "tta", "precision")
# Value of a field that manifests written before it existed lack.
FINGERPRINT_DEFAULTS = {"tta": "none"}


@dataclass
class EmbeddingSet:
    ids: np.ndarray  # object array of str, one per row
    vectors: np.ndarray  # float32 (N, D)
    manifest: dict  # the dataset's _manifest.json

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def fingerprint(manifest: dict) -> dict:
    """The part of a manifest that must match for embeddings to be comparable.

    precision (fp32 | bf16 | fp16, the autocast the backbone ran under) is part of it: resume never
    mixes fp16 and fp32 rows. Manifests written before it was a top-level field hold it in
    `compute`; a fingerprint stored without it (older runs) stays without it (None).
    """
    values = {key: manifest.get(key, FINGERPRINT_DEFAULTS.get(key)) for key in FINGERPRINT_FIELDS}
    if values["precision"] is None:
        values["precision"] = (manifest.get("compute") or {}).get("precision")
    return values


def unrecorded_fields(recorded: dict) -> frozenset[str]:
    """Fingerprint fields a stored fingerprint (an older run's) does not know: compare without them."""
    return frozenset(key for key, value in fingerprint(recorded).items() if value is None and key == "precision")


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(
            f"{path} is not an olymp embedding directory (no {MANIFEST_NAME}); "
            f"create one with: olymp extract INPUTS -o {path}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{manifest_path} is not valid JSON; re-extract into a fresh directory (or with --overwrite)") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path} is not an olymp manifest; re-extract into a fresh directory (or with --overwrite)")
    return manifest


def part_files(path: str | Path) -> list[Path]:
    return sorted(Path(path).glob(PART_GLOB))


def read_embeddings(path: str | Path) -> EmbeddingSet:
    """Read every committed part of an embedding directory into numpy arrays."""
    path = Path(path)
    manifest = load_manifest(path)
    parts = part_files(path)
    dim = manifest.get("embedding_dim") if isinstance(manifest, dict) else None
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise InputError(f"{path}/{MANIFEST_NAME} has no valid embedding_dim; re-extract into a fresh directory")
    if not parts:
        return EmbeddingSet(np.array([], dtype=object), np.zeros((0, dim), np.float32), manifest)
    tables = [_read_part(part, dim) for part in parts]
    table = pa.concat_tables(tables)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = np.ascontiguousarray(flat.reshape(len(ids), dim), dtype=np.float32)
    return EmbeddingSet(ids, vectors, manifest)


def _read_part(part: Path, dim: int) -> pa.Table:
    """One part file, checked: readable Parquet, an id column and `dim`-wide float vectors."""
    fix = f"delete {part.name} and re-run the same olymp extract command to redo it"
    try:
        table = pq.read_table(part)
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{part} is not a readable Parquet part ({first_line(error)}); {fix}") from None
    if "id" not in table.column_names or "embedding" not in table.column_names:
        raise InputError(f"{part} lacks the id or embedding column; {fix}")
    kind = table.schema.field("embedding").type
    width = kind.list_size if pa.types.is_fixed_size_list(kind) else None
    if width != dim:
        raise InputError(
            f"{part} holds {width if width is not None else 'variable'}-wide vectors, the manifest says {dim}; {fix}"
        )
    if table.column("embedding").null_count:
        raise InputError(f"{part} has rows without an embedding; {fix}")
    return table.select(["id", "embedding"])


def read_errors(path: str | Path) -> list[dict]:
    """Error records (id, path, error) of an embedding directory; empty when all inputs embedded."""
    import csv

    errors_csv = Path(path) / ERRORS_NAME
    if not errors_csv.is_file():
        return []
    with errors_csv.open(newline="") as f:
        return list(csv.DictReader(f))
