"""Reach behind a LocalRegion to change or count what it stored, for tests of corruption and of leftovers.

A local object's bytes are a file under ``data/`` or, for a small one, a row of the index's ``inline``
table (see :mod:`regions.local`); these helpers handle both, so a test need not know which.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from regions.local import LocalRegion

_INLINE = "inline/"


def rewrite_stored(region: LocalRegion, name: str, change: Callable[[bytes], bytes]) -> None:
    """Replace the stored bytes of ``name`` by ``change(old)``; the digest in the index stays."""
    row = region._select(name.encode())
    assert row is not None, f"{name!r} is not stored in {region.name!r}"
    if row[1].startswith(_INLINE):
        with region._lock:
            db = region._conn()
            (old,) = db.execute("SELECT data FROM inline WHERE file = ?", (row[1],)).fetchone()
            db.execute("UPDATE inline SET data = ? WHERE file = ?", (change(bytes(old)), row[1]))
        return
    path = region.root / "data" / row[1]
    path.write_bytes(change(path.read_bytes()))


def flip_byte(at: Callable[[int], int] = lambda n: n // 2) -> Callable[[bytes], bytes]:
    """A ``change`` that flips one bit of the byte at ``at(len(data))``."""

    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[at(len(out))] ^= 0x01
        return bytes(out)

    return change


def stored_count(root: Path) -> int:
    """How many objects' bytes a region directory holds: data files plus inline rows."""
    files = sum(1 for p in (root / "data").rglob("*") if p.is_file()) if (root / "data").exists() else 0
    index = root / "index.sqlite3"
    if not index.exists():
        return files
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return files + (db.execute("SELECT count(*) FROM inline").fetchone()[0] if "inline" in tables else 0)
    finally:
        db.close()
