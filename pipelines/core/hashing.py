"""Hashes of files: full SHA-256 (weights) and a cheap content fingerprint (inputs). No heavy imports."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Files up to twice this size are hashed whole; larger ones by their first and last EDGE_BYTES.
EDGE_BYTES = 64 * 1024


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """A cheap identity of a file's content: size, mtime_ns and a BLAKE2b of its first and last 64 KiB.

    Small files (≤ 128 KiB, most images) are hashed whole. A file replaced by another of the same
    size changes the hash of its edges or its mtime; `touch` alone changes only the mtime, and then
    the file counts as changed (re-embedding it is cheap, a stale vector is not). Raises OSError when
    the file cannot be read.
    """
    path = Path(path)
    info = os.stat(path)
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as stream:
        if info.st_size <= 2 * EDGE_BYTES:
            digest.update(stream.read())
        else:
            digest.update(stream.read(EDGE_BYTES))
            stream.seek(-EDGE_BYTES, os.SEEK_END)
            digest.update(stream.read(EDGE_BYTES))
    return f"{info.st_size}-{info.st_mtime_ns}-{digest.hexdigest()}"


def json_digest(value) -> str:
    """SHA-256 of a JSON-able value (keys sorted; non-JSON values by str): a key for settings."""
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint_of_fingerprints(parts) -> str:
    """One digest over many (key, fingerprint) pairs, order-independent of how they were listed."""
    digest = hashlib.blake2b(digest_size=16)
    for key, value in sorted(parts):
        digest.update(f"{key}\0{value}\n".encode())
    return digest.hexdigest()
