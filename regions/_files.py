"""The local driver's files: a put waiting for its commit, hashing while writing, fsync of a directory,
reading a range."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .base import ByteRange, ObjectInfo

READ_CHUNK = 1 << 20


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


def place(data: Path, name: str, make: Callable[[Path], None]) -> str:
    """Make the data file ``name`` under ``data`` with ``make(path)`` (a rename into place, a hard
    link) and fsync its directory; its path under ``data`` ("ab/<name>")."""
    rel = f"{name[:2]}/{name}"
    final = data / rel
    final.parent.mkdir(exist_ok=True)
    make(final)
    try:
        fsync_dir(final.parent)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return rel


def link_file(data: Path, rel: str) -> str | None:
    """A new name under ``data`` for the data file ``rel`` (a hard link); None if there is no such
    file. Data files are never rewritten, so both names hold the same bytes."""
    try:
        return place(data, uuid.uuid4().hex, lambda final: os.link(data / rel, final))
    except FileNotFoundError:
        return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def read_stored(
    fh: IO[bytes] | bytes, want: ByteRange | None, run: Callable[..., Awaitable[Any]]
) -> AsyncIterator[bytes]:
    """The stored bytes (an open file, or the inline bytes), whole or only ``want``; ``run`` runs
    a blocking call in a worker thread (translating its errors). The file is closed at the end."""
    if isinstance(fh, bytes):  # inline: already read (the portable layer checks the digest)
        if chunk := fh if want is None else fh[want.start : want.end + 1]:
            yield chunk
        return
    at, end = (0, None) if want is None else (want.start, want.end + 1)  # None: to the end of the file
    try:
        while (end is None or at < end) and (chunk := await run(read_at, fh, at, end)):
            at += len(chunk)
            yield chunk
    finally:
        fh.close()


def read_at(fh: IO[bytes], at: int, end: int | None) -> bytes:
    """The next chunk of ``fh`` from byte ``at``, stopping before ``end`` (None: the end of the file).

    A positioned read (``pread``): a ranged get reads only its range, never the bytes before it.
    """
    n = READ_CHUNK if end is None else min(READ_CHUNK, end - at)
    return os.pread(fh.fileno(), n, at) if n > 0 else b""
