"""The local driver's files: a put waiting for its commit, hashing while writing, fsync of a directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .base import ObjectInfo


@dataclass
class Write:
    """One put waiting for its index row to be committed."""

    raw: bytes
    rel: str  # data/ path, or inline/<uuid>
    size: int
    digest: str
    meta: dict[str, str]
    if_none_match: bool
    if_match: str | None
    data: bytes | None  # inline bytes
    done: asyncio.Future[ObjectInfo]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def etag(rel: str) -> str:
    # "ab/<uuid hex>" -> "<uuid hex>": a fresh UUID per put, never reused.
    return rel.rpartition("/")[2]


def hash_and_write(sha: Any, fh: IO[bytes], chunk: bytes) -> None:
    # In the worker thread: hashlib and the write both release the GIL on
    # large buffers, so the event loop stays free and two regions hash at once.
    sha.update(chunk)
    fh.write(chunk)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
