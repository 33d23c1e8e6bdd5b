"""Small objects live in the local driver's index (one commit, no file); big ones in data files."""

import sqlite3

import pytest

from regions import Corrupt, NotFound, PreconditionFailed
from regions.local import INLINE_MAX, LocalRegion
from tests.localstore import stored_count


def _inline_rows(root) -> int:
    db = sqlite3.connect(root / "index.sqlite3")
    try:
        return db.execute("SELECT count(*) FROM inline").fetchone()[0]
    finally:
        db.close()


def _files(root) -> int:
    return sum(1 for p in (root / "data").rglob("*") if p.is_file())


async def _body(region, name):
    _, stream = await region.get(name)
    return b"".join([c async for c in stream])


async def test_small_inline_big_in_a_file_and_overwrites_leave_nothing_behind(tmp_path):
    r = LocalRegion(tmp_path, name="r")
    small, big = b"s" * INLINE_MAX, b"b" * (INLINE_MAX + 1)
    await r.put("n", small, {"k": "1"})
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (1, 0)
    assert await _body(r, "n") == small
    await r.put("n", big, {})                     # inline -> file: the inline bytes go in the same commit
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (0, 1)
    assert await _body(r, "n") == big
    await r.put("n", small, {})                   # file -> inline: the old file is unlinked
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (1, 0)
    await r.put("empty", b"", {})                 # a tombstone's empty body is inline too
    assert await _body(r, "empty") == b""
    assert stored_count(tmp_path) == 2
    await r.delete("n")
    await r.delete("empty")
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (0, 0)
    with pytest.raises(NotFound):
        await r.head("n")
    await r.close()


async def test_a_refused_conditional_put_stores_no_inline_bytes(tmp_path):
    r = LocalRegion(tmp_path, name="r")
    info = await r.put("n", b"first", {})
    with pytest.raises(PreconditionFailed):
        await r.put("n", b"second", {}, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        await r.put("n", b"second", {}, if_match="not-" + info.etag)
    assert _inline_rows(tmp_path) == 1 and await _body(r, "n") == b"first"
    await r.close()


async def test_inline_bytes_missing_or_changed_are_corrupt(tmp_path):
    r = LocalRegion(tmp_path, name="r")
    await r.put("gone", b"x" * 100, {})
    await r.put("changed", b"y" * 100, {})
    db = sqlite3.connect(tmp_path / "index.sqlite3", isolation_level=None)
    file = db.execute("SELECT file FROM objects WHERE name = ?", (b"gone",)).fetchone()[0]
    db.execute("DELETE FROM inline WHERE file = ?", (file,))
    file = db.execute("SELECT file FROM objects WHERE name = ?", (b"changed",)).fetchone()[0]
    db.execute("UPDATE inline SET data = ? WHERE file = ?", (b"z" * 100, file))
    db.close()
    with pytest.raises(Corrupt):
        await r.get("gone")
    with pytest.raises(Corrupt):
        await _body(r, "changed")
    await r.close()
