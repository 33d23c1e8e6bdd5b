"""A region on a local directory: the embedded default and the model of the contract.

Layout under ``root``::

    index.sqlite3      one row per object: name (BLOB, so ORDER BY is byte order),
                       data file, size, digest, metadata (JSON), modified time;
                       and table ``inline``: the bytes of small objects
    data/ab/<uuid>     object bytes, one file per version, never rewritten
    tmp/<uuid>         bytes being written

A put streams into ``tmp/``, fsyncs, renames into ``data/`` and fsyncs the
directory; only then does one SQLite transaction (WAL, ``synchronous=FULL``)
point the name at the new file (puts that arrive while one transaction
commits share the next one: group commit, one WAL fsync for many). That
commit is the atomic point: a crash before it leaves an unreferenced file
(swept at open), never a half-visible object, and metadata can never disagree
with the data it describes. The old file is unlinked after the commit; a
reader that had already opened it keeps reading the old, whole version. A
ranged get reads only its range (``pread``, or a slice of inline bytes).

Small objects (a ``bytes`` body of at most ``inline_max`` bytes, 64 KiB by
default) live inside the index: their row names ``inline/<uuid>`` and table
``inline`` holds the bytes, written in the same transaction. One WAL commit
(one fsync) then stores the object, where a file costs three (the file, its
directory, the commit), and for small objects the fsyncs are most of a put's time.

Why an index instead of a metadata file beside each data file: listing in byte
order in constant memory is then an index scan, and ``if_none_match`` is an
INSERT that conflicts.

Etags. A data file is never rewritten and its name is a fresh UUID per put,
so that name is the object's etag. ``if_match`` compares it inside the same
``BEGIN IMMEDIATE`` transaction that installs or deletes the row: the check
and the change are one atomic step. A copy hard-links the data file.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from ._files import Write, etag, hash_and_write, link_file, place, read_stored, sha256
from ._local_index import INLINE, SCHEMA, SELECT_ROW, SELECT_WITH_INLINE, Locked, Row, connect, translate
from .base import (
    Body,
    ByteRange,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    RangeNotSatisfiable,
)
from .portable import PortableRegion

LIST_PAGE = 1000
INLINE_MAX = 64 << 10
T = TypeVar("T")


class LocalRegion(PortableRegion):
    """A :class:`~regions.base.Region` on a directory. Safe for concurrent use from one event loop."""

    def __init__(self, root: str | os.PathLike[str], *, name: str, page_size: int = LIST_PAGE):
        self.name = name
        self.root = Path(root)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one SQLite connection, used from worker threads
        self._reader: sqlite3.Connection | None = None  # look-ups on the event loop (module doc)
        self._init_lock = threading.Lock()
        self.page_size = page_size
        self.inline_max = INLINE_MAX
        self._queue: list[Write] = []  # writes waiting for the next group commit (event loop only)
        self._committer: asyncio.Future[None] | None = None
        self._open_lock: int | None = None

    def __repr__(self) -> str:
        return f"LocalRegion({self.name!r}, root={str(self.root)!r})"

    # -- plumbing -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        with self._init_lock:  # the sweep must run before any put makes a temp file
            if self._db is None:
                self._db = self._open()
            return self._db

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._conn()  # the schema and the sweep come first
            # Each SELECT reads what was committed before it, or fails at once on a lock.
            self._reader = connect(self.root / "index.sqlite3", wait=0)
        return self._reader

    def _open(self) -> sqlite3.Connection:
        for sub in ("data", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        db = connect(self.root / "index.sqlite3", wait=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._sweep_tmp()
        return db

    def _sweep_tmp(self) -> None:
        # Files of puts that never committed (a crash, a cancelled upload). Every open region holds
        # open.lock shared; only an opener that is alone (gets it exclusive) sweeps, so a process
        # never removes another process's upload in flight (several `replicator work` processes).
        self._open_lock = os.open(self.root / "open.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            for leftover in (self.root / "tmp").iterdir():
                leftover.unlink(missing_ok=True)
        fcntl.flock(self._open_lock, fcntl.LOCK_SH)

    async def _run(self, fn: Callable[..., T], *args: Any, name: str | None = None) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as e:
            raise translate(e, self.name, name) from e

    def _info(self, row: Row) -> ObjectInfo:
        raw, file, size, digest, meta, modified = row
        return ObjectInfo(
            name=bytes(raw).decode("utf-8"),
            size=size,
            digest=digest,
            meta=json.loads(meta),
            modified=datetime.fromtimestamp(modified, UTC),
            etag=etag(file),
        )

    def _mismatch(self, raw: bytes, row: tuple[Any, ...] | None, if_match: str) -> PreconditionFailed | None:
        """The error for a row that is not the write ``if_match`` names (``row`` None: missing)."""
        if row is not None and etag(row[0]) == if_match:
            return None
        what = "object is missing" if row is None else "object is another write"
        return PreconditionFailed(f"{what} (if_match {if_match!r})", region=self.name, name=raw.decode("utf-8"))

    def _select(self, raw: bytes) -> Row | None:
        with self._lock:
            row: Row | None = self._conn().execute(SELECT_ROW, (raw,)).fetchone()
            return row

    # -- writing ------------------------------------------------------------

    def _open_tmp(self) -> tuple[Path, IO[bytes]]:
        self._conn()
        return self._new_tmp()

    def _new_tmp(self) -> tuple[Path, IO[bytes]]:
        # On the event loop, after _conn() is done in a thread: creating one file in an existing
        # directory is quick, and a put cancelled while a worker thread made its file would
        # leave that file behind (a client hanging up cancels the put at any await).
        path = self.root / "tmp" / uuid.uuid4().hex
        return path, open(path, "xb")

    def _place(self, tmp: Path, fh: IO[bytes]) -> str:
        """fsync the temp file and move it into data/ (directory fsynced); its path under data/."""
        try:
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fh.close()
        return place(self.root / "data", tmp.name, lambda final: os.rename(tmp, final))

    def _write_file(self, data: bytes) -> str:
        tmp, fh = self._open_tmp()
        try:
            fh.write(data)
        except BaseException:
            fh.close()
            tmp.unlink(missing_ok=True)
            raise
        return self._place(tmp, fh)

    async def _commit(
        self,
        raw: bytes,
        rel: str,
        size: int,
        digest: str,
        meta: dict[str, str],
        if_none_match: bool,
        if_match: str | None,
        data: bytes | None = None,
    ) -> ObjectInfo:
        """Queue one write for the next group commit and wait until it is durable (or refused).

        Group commit: while one transaction commits in a worker thread, the
        writes that arrive queue up, and the next transaction commits them all
        with one WAL fsync. A write is acknowledged only once its own COMMIT
        returned. A write cancelled while still queued is dropped (its data
        file unlinked); once taken into a transaction, it commits or fails
        with the others, as a put running in a thread always did.
        """
        write = Write(
            raw, rel, size, digest, meta, if_none_match, if_match, data, asyncio.get_running_loop().create_future()
        )
        self._queue.append(write)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_queued())
        try:
            return await write.done
        except Exception as e:
            raise translate(e, self.name, raw.decode("utf-8")) from e

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            dropped = [w for w in batch if w.done.cancelled()]
            batch = [w for w in batch if not w.done.cancelled()]
            try:
                outcomes = await asyncio.to_thread(self._commit_batch, batch, dropped)
            except BaseException as e:
                outcomes = [e] * len(batch)
            for w, outcome in zip(batch, outcomes, strict=True):
                if w.done.done():
                    continue
                if isinstance(outcome, BaseException):
                    w.done.set_exception(outcome)
                else:
                    w.done.set_result(outcome)

    def _commit_batch(self, batch: list[Write], dropped: list[Write]) -> list[ObjectInfo | BaseException]:
        """One transaction for ``batch``; each write's ObjectInfo, or the exception that refused it."""
        outcomes: list[tuple[ObjectInfo, str | None] | BaseException] = []
        unlink: list[str] = [w.rel for w in dropped if not w.rel.startswith(INLINE)]
        try:
            if batch:
                outcomes = self._transaction(batch)
        except BaseException as e:
            outcomes = [e] * len(batch)
        for w, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                unlink.append(w.rel)
            elif outcome[1] is not None:
                unlink.append(outcome[1])  # the replaced version's file, unreferenced since COMMIT
        for rel in unlink:
            if not rel.startswith(INLINE):
                (self.root / "data" / rel).unlink(missing_ok=True)
        return [o if isinstance(o, BaseException) else o[0] for o in outcomes]

    def _transaction(self, batch: list[Write]) -> list[tuple[ObjectInfo, str | None] | BaseException]:
        now = time.time()
        outcomes: list[tuple[ObjectInfo, str | None] | BaseException] = []
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for w in batch:
                    db.execute("SAVEPOINT w")  # a refused write undoes only its own statements
                    try:
                        old = self._apply(db, w, now)
                        db.execute("RELEASE w")
                    except Exception as e:
                        db.execute("ROLLBACK TO w")
                        db.execute("RELEASE w")
                        outcomes.append(e)
                        continue
                    info = ObjectInfo(
                        name=w.raw.decode("utf-8"),
                        size=w.size,
                        digest=w.digest,
                        meta=w.meta,
                        modified=datetime.fromtimestamp(now, UTC),
                        etag=etag(w.rel),
                    )
                    outcomes.append((info, old if old is not None and not old.startswith(INLINE) else None))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return outcomes

    def _apply(self, db: sqlite3.Connection, w: Write, now: float) -> str | None:
        """Install one write's row (and inline bytes) inside the open transaction; the file it replaced."""
        row = (w.raw, w.rel, w.size, w.digest, json.dumps(w.meta, ensure_ascii=False), now)
        old = None
        if w.if_none_match:
            db.execute("INSERT INTO objects VALUES (?,?,?,?,?,?)", row)
        else:
            found = db.execute("SELECT file FROM objects WHERE name = ?", (w.raw,)).fetchone()
            if w.if_match is not None and (refused := self._mismatch(w.raw, found, w.if_match)):
                raise refused
            db.execute("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?)", row)
            if found is not None:
                old = found[0]
                if old.startswith(INLINE):
                    db.execute("DELETE FROM inline WHERE file = ?", (old,))
        if w.data is not None:
            db.execute("INSERT INTO inline VALUES (?,?)", (w.rel, w.data))
        return old

    async def _put(
        self, name: str, body: Body, meta: dict[str, str], *, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        raw = name.encode("utf-8")
        if isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            digest = (
                hashlib.sha256(data).hexdigest()
                if len(data) <= self.inline_max
                else await self._run(sha256, data, name=name)
            )
            if len(data) <= self.inline_max:
                rel, inline = INLINE + uuid.uuid4().hex, data
            else:
                rel, inline = await self._run(self._write_file, data, name=name), None
            return await self._commit(raw, rel, len(data), digest, meta, if_none_match, if_match, inline)
        await self._run(self._conn, name=name)
        try:
            tmp, fh = self._new_tmp()
        except OSError as e:
            raise translate(e, self.name, name) from e
        sha, size = hashlib.sha256(), 0
        try:
            async for chunk in body:  # any chunk size will do for a file
                size += len(chunk)
                await self._run(hash_and_write, sha, fh, chunk, name=name)
            rel = await self._run(self._place, tmp, fh, name=name)
        except BaseException:
            fh.close()
            tmp.unlink(missing_ok=True)
            raise
        return await self._commit(raw, rel, size, sha.hexdigest(), meta, if_none_match, if_match)

    async def _copy(self, source: str, target: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        """A hard link to the source's data file (or its inline bytes), then the target's row as a
        put's. A data file is never rewritten and is named by its etag: what is linked is ``info``'s."""
        rel, data = await self._run(self._link, source, info.etag, name=source)
        return await self._commit(target.encode("utf-8"), rel, info.size, info.digest, meta, False, None, data)

    def _link(self, name: str, want: str) -> tuple[str, bytes | None]:
        with self._lock:
            found = self._conn().execute(SELECT_WITH_INLINE, (name.encode("utf-8"),)).fetchone()
        if found is None:
            raise NotFound("no such object", region=self.name, name=name)
        file = found[1]
        if etag(file) == want:
            if file.startswith(INLINE):
                return INLINE + uuid.uuid4().hex, found[6]
            if (rel := link_file(self.root / "data", file)) is not None:
                return rel, None
        # another write, or replaced (and its file unlinked) since the SELECT
        raise PreconditionFailed("the source holds another write", region=self.name, name=name)

    # -- reading ------------------------------------------------------------

    def _look_up_here(self, sql: str, raw: bytes) -> tuple[Any, ...] | None:
        """One row of ``sql`` read on this thread (module doc); ``Locked`` when the index is locked
        and the caller should ask a worker thread instead."""
        try:
            row: tuple[Any, ...] | None = self._reader_conn().execute(sql, (raw,)).fetchone()
            return row
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise Locked from e
            raise translate(e, self.name, raw.decode("utf-8")) from e
        except Exception as e:
            raise translate(e, self.name, raw.decode("utf-8")) from e

    async def _head(self, name: str) -> ObjectInfo:
        raw = name.encode("utf-8")
        try:
            row = self._look_up_here(SELECT_ROW, raw)
        except Locked:
            row = await self._run(self._select, raw, name=name)
        if row is None:
            raise NotFound("no such object", region=self.name, name=name)
        return self._info(row)

    def _open_current(self, raw: bytes) -> tuple[Row, IO[bytes] | bytes] | tuple[None, None]:
        """The row and an open file, or the row and its inline bytes (read in the same statement)."""
        # A concurrent put may unlink the file between our SELECT and open:
        # look again, and call it corrupt only if the row still names a missing file.
        for _ in range(3):
            with self._lock:
                found = self._conn().execute(SELECT_WITH_INLINE, (raw,)).fetchone()
            if found is None:
                return None, None
            row, data = found[:6], found[6]
            if row[1].startswith(INLINE):
                if data is None:
                    raise FileNotFoundError(f"inline bytes missing for {raw!r}")
                return row, data
            try:
                return row, open(self.root / "data" / row[1], "rb")
            except FileNotFoundError:
                if self._select(raw) == row:
                    raise
        raise FileNotFoundError(f"data file keeps moving for {raw!r}")

    async def _get(self, name: str, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        raw = name.encode("utf-8")
        try:
            found = self._look_up_here(SELECT_WITH_INLINE, raw)
        except Locked:
            found = ()  # ask a worker thread
        if found is None:
            raise NotFound("no such object", region=self.name, name=name)
        row: Row | None
        fh: IO[bytes] | bytes | None
        if found and found[1].startswith(INLINE) and found[6] is not None:
            row, fh = found[:6], found[6]  # a small object: its bytes came with the row
        else:  # a data file to open, or a locked index: in a worker thread
            row, fh = await self._run(self._open_current, raw, name=name)
        if row is None or fh is None:
            raise NotFound("no such object", region=self.name, name=name)
        info = self._info(row)
        want = byte_range.within(info.size) if byte_range is not None else None
        if byte_range is not None and want is None:
            if not isinstance(fh, bytes):
                fh.close()
            raise RangeNotSatisfiable(f"the range starts past the end ({info.size} bytes)", region=self.name, name=name)
        return info, read_stored(fh, want, functools.partial(self._run, name=name))

    # -- deleting and listing -------------------------------------------------

    def _delete_row(self, raw: bytes, if_match: str | None) -> None:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT file FROM objects WHERE name = ?", (raw,)).fetchone()
                if row is not None and if_match is not None and (refused := self._mismatch(raw, row, if_match)):
                    raise refused
                db.execute("DELETE FROM objects WHERE name = ?", (raw,))
                if row is not None and row[0].startswith(INLINE):
                    db.execute("DELETE FROM inline WHERE file = ?", (row[0],))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if row is not None and not row[0].startswith(INLINE):
            (self.root / "data" / row[0]).unlink(missing_ok=True)

    async def _delete(self, name: str, *, if_match: str | None) -> None:
        await self._run(self._delete_row, name.encode("utf-8"), if_match, name=name)

    def _page(self, after: bytes | None, start: bytes) -> list[Row]:
        with self._lock:
            db = self._conn()
            if after is None:
                sql, args = "name >= ?", (start,)
            else:
                sql, args = "name > ?", (after,)
            return db.execute(
                f"SELECT name, file, size, digest, meta, modified FROM objects WHERE {sql} "
                f"ORDER BY name LIMIT {self.page_size}",
                args,
            ).fetchall()

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        start = prefix.encode("utf-8")
        after = None
        while True:
            rows = await self._run(self._page, after, start)
            for row in rows:
                raw = bytes(row[0])
                if not raw.startswith(start):
                    return
                yield self._info(row)
            if len(rows) < self.page_size:
                return
            after = bytes(rows[-1][0])

    async def close(self) -> None:
        if self._committer is not None:  # let queued writes finish before the connection goes
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._open_lock is not None:
                os.close(self._open_lock)
                self._open_lock = None
