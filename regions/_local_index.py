"""The SQLite index of a local region (``regions.local``): schema, statements, error mapping."""

from __future__ import annotations

import sqlite3
from typing import Any

from .base import Corrupt, PreconditionFailed, RegionError, Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    name     BLOB PRIMARY KEY,
    file     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    meta     TEXT NOT NULL,
    modified REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inline (
    file     TEXT PRIMARY KEY,
    data     BLOB NOT NULL
)
"""
#: A row of table objects: name, file, size, digest, meta (JSON), modified.
Row = tuple[Any, ...]
INLINE = "inline/"  # objects.file of a small object whose bytes are in table inline
SELECT_ROW = "SELECT name, file, size, digest, meta, modified FROM objects WHERE name = ?"
SELECT_WITH_INLINE = (  # the row and, for a small object, its bytes in the same statement
    "SELECT o.name, o.file, o.size, o.digest, o.meta, o.modified, i.data FROM objects o "
    "LEFT JOIN inline i ON i.file = o.file WHERE o.name = ?"
)


class Locked(Exception):
    """The index is locked for a look-up on the event loop's thread (WAL recovery, a schema change)."""


def connect(path: Any, *, wait: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any one thread at a
    time; ``wait``: seconds a statement waits for a lock (0: fail at once)."""
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=wait)


def translate(err: BaseException, region: str, name: str | None) -> RegionError:
    """Map a local I/O failure onto the taxonomy. A disk error is not retried here."""
    if isinstance(err, RegionError):
        return err
    if isinstance(err, sqlite3.IntegrityError):
        return PreconditionFailed("object exists", region=region, name=name)
    if isinstance(err, FileNotFoundError):
        return Corrupt(f"data file missing: {err.strerror}", region=region, name=name)
    return Unavailable(f"{type(err).__name__}: {err}", region=region, name=name)
