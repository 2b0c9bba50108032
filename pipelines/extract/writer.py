"""Writer stage: buffer embeddings and commit them as Parquet parts, atomically and resumably.

A part is the unit of resume. Committing part K means: its error records go to
`_errors/part-K.csv` (temp name, then rename), then its rows to `part-K.parquet` (temp name,
then rename). The Parquet rename is the commit point: an errors file without its part is a
leftover of an interrupted commit and is discarded on resume.

Every committed record (a Parquet row, an error record) carries the `file_fingerprint` of the
input it came from (pipelines.core.hashing.file_fingerprint), and an error record its `attempts`.
`drop_records` removes superseded records from committed parts — each part's errors file and
then the part itself rewritten atomically, or deleted when nothing is left — so a resume that
re-embeds an input never leaves its old row for readers to find.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import write_atomic, write_json_atomic
from pipelines.data.embeddings import ERROR_PARTS_DIR, ERRORS_NAME, MANIFEST_NAME, METADATA_KEY, PART_GLOB

ERROR_FIELDS = ("id", "path", "error", "file_fingerprint", "attempts")
FINGERPRINT_COLUMN = "file_fingerprint"


def write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data)


def write_error_csv(path: Path, records: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ERROR_FIELDS)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in ERROR_FIELDS} for r in records)

    write_atomic(path, write)


def read_error_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def embedding_schema(dim: int, metadata: dict, extra_columns: dict | None = None) -> pa.Schema:
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("embedding", pa.list_(pa.float32(), dim))]
    fields += [pa.field(name, kind) for name, kind in (extra_columns or {}).items()]
    fields.append(pa.field(FINGERPRINT_COLUMN, pa.string()))
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


@dataclass(frozen=True)
class Record:
    """One committed record of an id: a row of a part, or an error record of it."""

    part: str  # the part's stem, e.g. "part-00003"
    order: tuple  # (part mtime_ns, part name): the larger, the newer
    kind: str  # "row" | "error"
    fingerprint: str | None  # file_fingerprint of the input when it was committed (None: older olymp)
    attempts: int = 1  # errors: how many runs tried this input


@dataclass
class CommittedState:
    """What earlier runs already wrote into an output directory."""

    ids: set = field(default_factory=set)  # every id with a committed embedding or error
    embedded: int = 0
    errors: int = 0
    next_part: int = 0
    error_records: list = field(default_factory=list)  # of committed parts only: what `_errors.csv` lists
    records: dict = field(default_factory=dict)  # id -> [Record], oldest first (more than one: duplicates)

    def add(self, item_id: str, record: Record) -> None:
        self.records.setdefault(item_id, []).append(record)

    def newest(self, item_id: str) -> Record:
        return max(self.records[item_id], key=lambda record: record.order)

    def counted(self, listed: set) -> tuple[int, int]:
        """(embedded, errors) over the listed ids, each id once (its newest record)."""
        kinds = [self.newest(item_id).kind for item_id in self.records if item_id in listed]
        return kinds.count("row"), kinds.count("error")


def scan_committed(output: Path, own_prefix: str | None = "part-") -> CommittedState:
    """Read back committed parts (ids only, of every shard) and drop leftovers of an interrupted commit.

    Only files named `own_prefix...` are this process's to clean up (and to number on from):
    other shards may be writing theirs right now. None: clean up nothing (a read-only look).
    """
    state = CommittedState()
    if own_prefix is not None:
        remove_leftovers(output, own_prefix)
    orders = {}
    for part in sorted(output.glob(PART_GLOB)):
        table = pq.read_table(part, columns=[name for name in ("id", FINGERPRINT_COLUMN)
                                             if name in pq.read_schema(part).names])
        ids = table.column("id").to_pylist()
        prints = table.column(FINGERPRINT_COLUMN).to_pylist() if FINGERPRINT_COLUMN in table.column_names else [None] * len(ids)
        orders[part.stem] = order = (part.stat().st_mtime_ns, part.name)
        for item_id, print_ in zip(ids, prints):
            state.add(item_id, Record(part.stem, order, "row", print_))
        state.ids.update(ids)
        state.embedded += len(ids)
        if own_prefix is not None and is_own_part(part.name, own_prefix):
            state.next_part = max(state.next_part, part_number(part) + 1)
    error_dir = output / ERROR_PARTS_DIR
    if error_dir.is_dir():
        if own_prefix is not None:
            remove_leftovers(error_dir, own_prefix)
        for error_file in sorted(error_dir.glob("part-*.csv")):
            # Keyed on the parts read above, not on what exists now: another shard may commit a
            # part (errors file first, then the part) while this scan runs; that part is not in it.
            if error_file.stem not in orders:
                if (own_prefix is not None and is_own_part(error_file.name, own_prefix)
                        and not (output / f"{error_file.stem}.parquet").exists()):
                    error_file.unlink()  # its part never committed: those inputs run again
                continue
            records = read_error_csv(error_file)
            for r in records:
                state.add(r["id"], Record(error_file.stem, orders[error_file.stem], "error",
                                          r.get(FINGERPRINT_COLUMN) if FINGERPRINT_COLUMN in r else None,
                                          _attempts(r.get("attempts"))))
            state.ids.update(r["id"] for r in records)
            state.errors += len(records)
            state.error_records.extend(records)
    return state


def _attempts(value) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def drop_records(output: Path, drops: dict[str, set]) -> None:
    """Remove the given ids from committed parts: {part stem: ids}. Per part, its errors file
    first, then the part (the commit point); each written atomically, or deleted when emptied.

    A kill in between leaves some of the ids still committed: the next resume decides the same
    drops again, so the outcome is the same."""
    import pyarrow.compute as pc

    for stem, ids in sorted(drops.items()):
        part = output / f"{stem}.parquet"
        errors_file = output / ERROR_PARTS_DIR / f"{stem}.csv"
        keep_errors = []
        if errors_file.is_file():
            records = read_error_csv(errors_file)
            keep_errors = [r for r in records if r["id"] not in ids]
            if len(keep_errors) != len(records):
                if keep_errors:
                    write_error_csv(errors_file, keep_errors)
                else:
                    errors_file.unlink()
        if not part.is_file():
            continue
        table = pq.read_table(part)
        kept = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=pa.array(sorted(ids), pa.string()))))
        if kept.num_rows == 0 and not keep_errors:
            part.unlink()
        elif kept.num_rows != table.num_rows:
            mtime = part.stat().st_mtime_ns  # the part's age orders duplicates: keep it
            write_atomic(part, lambda tmp: pq.write_table(kept, tmp))
            os.utime(part, ns=(mtime, mtime))


def part_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def is_own_part(name: str, prefix: str) -> bool:
    """`part-00003.*` belongs to the unsharded prefix `part-`, `part-s00001of00002-00003.*` to its shard."""
    return name.startswith(prefix) and name[len(prefix):].partition(".")[0].isdigit()


def remove_leftovers(folder: Path, own_prefix: str) -> None:
    """Delete this process's half-written temp files (`.part-K.parquet.tmp`). The glob alone is not
    enough: `.part-*` also matches the temp files of shards that may be writing right now."""
    for leftover in folder.glob(f".{own_prefix}*.tmp"):
        if is_own_part(leftover.name[1:], own_prefix):
            leftover.unlink()


class PartWriter:
    """Buffers rows and error records; commits a part every `part_size` inputs."""

    def __init__(self, output: Path, dim: int, metadata: dict, part_size: int, first_part: int,
                 extra_columns: dict | None = None, prefix: str = "part-", fingerprints: dict | None = None,
                 attempts: dict | None = None):
        self.output = output
        self.fingerprints = fingerprints or {}  # id -> file_fingerprint, stored with its record
        self.attempts = attempts or {}  # id -> runs that already failed on it (retried inputs)
        self.prefix = prefix  # unique per shard, so shards never write the same file
        self.extra_columns = dict(extra_columns or {})  # e.g. n_windows for audio
        self.extra: dict[str, list] = {name: [] for name in self.extra_columns}
        self.schema = embedding_schema(dim, metadata, self.extra_columns)
        self.dim = dim
        self.part_size = part_size
        self.next_part = first_part
        self.ids: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.errors: list[dict] = []

    @property
    def pending(self) -> int:
        return len(self.ids) + len(self.errors)

    def add(self, ids: list[str], vectors: np.ndarray, errors: list[dict], extra: dict | None = None) -> None:
        if ids:
            self.ids.extend(ids)
            self.vectors.append(np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim))
            for name in self.extra_columns:
                self.extra[name].extend(extra[name])
        self.errors.extend(errors)
        if self.pending >= self.part_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"{self.prefix}{self.next_part:05d}"
        if self.errors:
            error_dir = self.output / ERROR_PARTS_DIR
            error_dir.mkdir(exist_ok=True)
            records = [{**r, FINGERPRINT_COLUMN: self.fingerprints.get(r["id"], ""),
                        "attempts": self.attempts.get(r["id"], 0) + 1} for r in self.errors]
            write_error_csv(error_dir / f"{name}.csv", records)
        flat = np.concatenate(self.vectors).ravel() if self.vectors else np.zeros(0, np.float32)
        columns = {
            "id": pa.array(self.ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), self.dim),
            **{name: pa.array(values, self.extra_columns[name]) for name, values in self.extra.items()},
            FINGERPRINT_COLUMN: pa.array([self.fingerprints.get(i) for i in self.ids], pa.string()),
        }
        table = pa.table(columns, schema=self.schema)
        write_atomic(self.output / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
        self.next_part += 1
        self.ids, self.vectors, self.errors = [], [], []
        self.extra = {name: [] for name in self.extra_columns}


def merge_error_parts(output: Path, records: list[dict]) -> Path | None:
    """Write the committed parts' error records (from scan_committed) as one `_errors.csv` for the
    user: an errors file whose part never committed would list inputs the manifest's counts leave out."""
    target = output / ERRORS_NAME
    if not records:
        target.unlink(missing_ok=True)
        return None
    write_error_csv(target, sorted(records, key=lambda r: r["id"]))
    return target


def write_manifest(output: Path, manifest: dict) -> None:
    write_json(output / MANIFEST_NAME, manifest)
