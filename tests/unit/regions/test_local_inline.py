"""Small objects live in the local driver's index (one commit, no file); big ones in data files."""

import asyncio
import sqlite3

import pytest

from regions import Corrupt, NotFound, PreconditionFailed
from regions._local_index import Locked
from regions.local import INLINE_MAX, LocalRegion
from tests.support.eventually import eventually
from tests.support.localstore import stored_count


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
    await r.put("n", big, {})  # inline -> file: the inline bytes go in the same commit
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (0, 1)
    assert await _body(r, "n") == big
    await r.put("n", small, {})  # file -> inline: the old file is unlinked
    assert (_inline_rows(tmp_path), _files(tmp_path)) == (1, 0)
    await r.put("empty", b"", {})  # a tombstone's empty body is inline too
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


async def test_concurrent_puts_share_commits_and_a_refused_one_spoils_none(tmp_path, monkeypatch):
    r = LocalRegion(tmp_path, name="r")
    first = await r.put("taken", b"old", {})
    transactions = []
    real = r._transaction
    monkeypatch.setattr(r, "_transaction", lambda batch: transactions.append(len(batch)) or real(batch))
    puts = [r.put(f"n{i}", b"x" * 100 * i, {}) for i in range(40)]
    puts.append(r.put("taken", b"new", {}, if_none_match=True))
    puts.append(r.put("taken", b"new", {}, if_match="not-" + first.etag))
    outcomes = await asyncio.gather(*puts, return_exceptions=True)
    assert all(o.size == 100 * i for i, o in enumerate(outcomes[:40]))
    assert all(isinstance(o, PreconditionFailed) for o in outcomes[40:])
    assert sum(transactions) == 42 and len(transactions) < 42, transactions  # batched
    assert await _body(r, "taken") == b"old"
    assert [await _body(r, f"n{i}") for i in (0, 39)] == [b"", b"x" * 3900]
    await r.close()


async def test_puts_cancelled_while_queued_store_nothing(tmp_path):
    r = LocalRegion(tmp_path, name="r")
    await r.put("warm", b"w", {})
    r._lock.acquire()  # the committer's next transaction waits here: later puts queue up behind it
    try:
        busy = asyncio.ensure_future(r.put("busy", b"x", {}))
        await eventually(
            lambda: r._committer is not None and not r._committer.done() and not r._queue,
            timeout=2,
            interval=0.001,
            what="the committer waiting on the lock with nothing queued",
        )
        queued = asyncio.ensure_future(r.put("queued", b"y", {}))
        queued_file = asyncio.ensure_future(r.put("queued-file", b"b" * (INLINE_MAX + 1), {}))
        await eventually(
            lambda: len(r._queue) == 2, timeout=2, interval=0.001, what="two puts queued"
        )  # the big one's file is written and placed
        assert _files(tmp_path) == 1
        queued.cancel()
        queued_file.cancel()
        await asyncio.sleep(0)
    finally:
        r._lock.release()
    await busy
    for put in (queued, queued_file):
        with pytest.raises(asyncio.CancelledError):
            await put
    await r.close()  # waits for the committer, which dropped both
    r = LocalRegion(tmp_path, name="r")
    for name in ("queued", "queued-file"):
        with pytest.raises(NotFound):
            await r.head(name)
    assert stored_count(tmp_path) == 2 and _files(tmp_path) == 0  # warm and busy: no stray row or file
    await r.close()


async def test_look_ups_read_beside_an_open_write_without_waiting_for_it(tmp_path):
    """A head or a small get reads the index beside a writer's open transaction (WAL) and sees
    only what was committed."""
    r = LocalRegion(tmp_path, name="r")
    try:
        await r.put("small", b"s" * 10, {"k": "1"})
        await r.put("big", b"b" * (INLINE_MAX + 1), {})
        writer = sqlite3.connect(tmp_path / "index.sqlite3", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM objects WHERE name = ?", (b"small",))  # not committed: not seen
        try:
            assert (await asyncio.wait_for(r.head("small"), 1)).meta == {"k": "1"}
            assert await asyncio.wait_for(_body(r, "small"), 1) == b"s" * 10
            assert len(await asyncio.wait_for(_body(r, "big"), 1)) == INLINE_MAX + 1
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    finally:
        await r.close()


async def test_a_look_up_that_meets_a_locked_index_asks_a_worker_thread(tmp_path, monkeypatch):
    r = LocalRegion(tmp_path, name="r")
    try:
        await r.put("small", b"s" * 10, {"k": "1"})

        def locked(sql, raw):
            raise Locked  # as the loop-side connection raises on "database is locked"

        monkeypatch.setattr(r, "_look_up_here", locked)
        assert (await r.head("small")).meta == {"k": "1"}
        assert await _body(r, "small") == b"s" * 10
        with pytest.raises(NotFound):
            await r.head("missing")
    finally:
        await r.close()
