"""The journal on SQLite: WAL mode, ``synchronous=FULL``, one connection used from a worker thread.

A read's one question (:meth:`SqliteJournal.behind`) goes to a second connection on the caller's
thread instead: WAL lets it read beside a writer's transaction without waiting for its fsync,
and the rows it reads (work still owed) are few and hot in the page cache, so the query costs
less than the hop to a thread would. A reader that meets a lock (WAL recovery, a schema change)
asks through the worker thread after all."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from replicator.journal import Backlog, Erasure, Kind, Pending, RegionLag, Task

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    src         TEXT NOT NULL,
    dst         TEXT NOT NULL,
    version     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    gen         INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    next_try    REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    UNIQUE (kind, name, dst)
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (next_try);
CREATE TABLE IF NOT EXISTS erasures (
    id               TEXT PRIMARY KEY,
    customer_tag     TEXT NOT NULL,
    key_destroyed_at TEXT NOT NULL,
    state            TEXT NOT NULL,
    regions          TEXT NOT NULL
);
"""

_COLUMNS = "id, kind, name, src, dst, version, attempts, gen, last_error, coalesce(lease_owner, '')"

# The reconciler's: one lease per partition, one checkpoint per partition.
_RECONCILE_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    key   TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    key     TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


class SqliteJournal:
    def __init__(self, path: str | Path, *, clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a row is on disk before add() returns
        self._db.executescript(_SCHEMA)
        self._db.executescript(_RECONCILE_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "size" not in columns:  # journals made before rows carried their size
            self._db.execute("ALTER TABLE tasks ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
        # Autocommit: each SELECT is its own read transaction, so it sees every row committed before it.
        self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0)

    async def _tx(self, fn, *args):
        def run():
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db, *args)
                    self._db.execute("COMMIT")
                    return result
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

        return await asyncio.to_thread(run)

    async def add(self, kind: Kind, name: str, *, src: str, dst: str, version: str = "", size: int = 0) -> None:
        now = self._clock()

        def add(db):
            db.execute(
                "INSERT INTO tasks (kind, name, src, dst, version, size, created, next_try) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, name, dst) DO UPDATE SET "
                "  src = excluded.src, gen = gen + 1, next_try = min(next_try, excluded.next_try), "
                "  version = max(version, excluded.version), size = excluded.size",
                (kind, name, src, dst, version, size, now, now),
            )

        await self._tx(add)

    async def claim(self, owner: str, *, limit: int = 32, lease: float = 60.0) -> list[Task]:
        now = self._clock()

        def claim(db):
            rows = db.execute(
                f"UPDATE tasks SET lease_owner = ?, lease_until = ? WHERE id IN ("
                f"  SELECT id FROM tasks WHERE next_try <= ? AND lease_until < ? "
                f"  ORDER BY next_try LIMIT ?) RETURNING {_COLUMNS}",
                (owner, now + lease, now, now, limit),
            ).fetchall()
            return [Task(*r) for r in rows]

        return await self._tx(claim)

    async def complete(self, task: Task) -> bool:
        def complete(db):
            return db.execute("DELETE FROM tasks WHERE id = ? AND gen = ?", (task.id, task.gen)).rowcount == 1

        done = await self._tx(complete)
        if not done:  # work was added meanwhile: free the row for the next claim (if still ours)
            await self._tx(
                lambda db: db.execute(
                    "UPDATE tasks SET lease_until = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
                    (task.id, task.owner),
                )
            )
        return done

    async def retry_later(self, task: Task, error: str, delay: float) -> None:
        now = self._clock()
        # Only while the lease is ours: a worker that re-claimed the row after ours lapsed owns it now.
        await self._tx(
            lambda db: db.execute(
                "UPDATE tasks SET attempts = attempts + 1, last_error = ?, next_try = ?, "
                "lease_until = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
                (error[:500], now + delay, task.id, task.owner),
            )
        )

    async def backlog(self) -> Backlog:
        def stats(db):
            return db.execute("SELECT count(*), min(created) FROM tasks").fetchone()

        count, oldest = await self._tx(stats)
        return Backlog(count, max(0.0, self._clock() - oldest) if oldest is not None else 0.0)

    async def lag(self) -> list[RegionLag]:
        def stats(db):
            return db.execute(
                "SELECT dst, count(*), coalesce(sum(size), 0), min(created) FROM tasks GROUP BY dst ORDER BY dst"
            ).fetchall()

        now = self._clock()
        return [RegionLag(dst, n, size, max(0.0, now - oldest)) for dst, n, size, oldest in await self._tx(stats)]

    async def behind(self, name: str) -> set[str]:
        def regions(db):  # kind IN (...) lets the (kind, name, dst) index answer
            return db.execute(
                "SELECT DISTINCT dst FROM tasks WHERE kind IN ('copy', 'repair', 'delete') AND name = ?", (name,)
            ).fetchall()

        try:
            rows = regions(self._reader)  # on this thread: see the module doc
        except sqlite3.OperationalError:  # busy or locked: wait for it in the worker thread instead
            rows = await self._tx(regions)
        return {dst for (dst,) in rows}

    # -- the operator's view ------------------------------------------------------------

    @staticmethod
    def _where(ids: Sequence[int] | None, dst: str | None) -> tuple[str, list[int | str]]:
        clauses: list[str] = ["1"]
        args: list[int | str] = []
        if ids is not None:
            clauses.append(f"id IN ({', '.join('?' * len(ids))})" if ids else "0")
            args += [int(i) for i in ids]
        if dst is not None:
            clauses.append("dst = ?")
            args.append(dst)
        return " AND ".join(clauses), args

    async def pending(
        self, *, ids: Sequence[int] | None = None, dst: str | None = None, limit: int = 100
    ) -> tuple[int, list[Pending]]:
        where, args = self._where(ids, dst)

        def pending(db):
            (total,) = db.execute(f"SELECT count(*) FROM tasks WHERE {where}", args).fetchone()
            rows = db.execute(
                "SELECT id, kind, name, src, dst, version, attempts, last_error, created, next_try, "
                f"coalesce(lease_owner, ''), lease_until FROM tasks WHERE {where} "
                "ORDER BY next_try, id LIMIT ?",
                [*args, limit],
            ).fetchall()
            return total, [Pending(*r) for r in rows]

        return await self._tx(pending)

    async def retry_now(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        where, args = self._where(ids, dst)
        now = self._clock()
        return await self._tx(
            lambda db: db.execute(f"UPDATE tasks SET next_try = min(next_try, ?) WHERE {where}", [now, *args]).rowcount
        )

    async def drop(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        where, args = self._where(ids, dst)
        return await self._tx(lambda db: db.execute(f"DELETE FROM tasks WHERE {where}", args).rowcount)

    async def create_erasure(self, customer_tag: str, key_destroyed_at: str, regions: list[str]) -> Erasure:
        erasure = Erasure(
            id="er_" + secrets.token_hex(12),
            customer_tag=customer_tag,
            key_destroyed_at=key_destroyed_at,
            state="running",
            regions={r: {"deleted": 0, "remaining": -1} for r in regions},
        )
        await self._tx(
            lambda db: db.execute(
                "INSERT INTO erasures VALUES (?, ?, ?, ?, ?)",
                (erasure.id, customer_tag, key_destroyed_at, erasure.state, json.dumps(erasure.regions)),
            )
        )
        return erasure

    async def update_erasure(self, id: str, region: str, *, deleted: int, remaining: int) -> None:
        def update(db):
            (raw,) = db.execute("SELECT regions FROM erasures WHERE id = ?", (id,)).fetchone()
            regions = json.loads(raw)
            regions[region] = {"deleted": deleted, "remaining": remaining}
            db.execute("UPDATE erasures SET regions = ? WHERE id = ?", (json.dumps(regions), id))

        await self._tx(update)

    async def finish_erasure(self, id: str) -> None:
        await self._tx(lambda db: db.execute("UPDATE erasures SET state = 'done' WHERE id = ?", (id,)))

    async def erasure(self, id: str) -> Erasure | None:
        row = await self._tx(
            lambda db: db.execute(
                "SELECT id, customer_tag, key_destroyed_at, state, regions FROM erasures WHERE id = ?", (id,)
            ).fetchone()
        )
        return _erasure(row) if row else None

    async def running_erasures(self) -> list[Erasure]:
        rows = await self._tx(
            lambda db: db.execute(
                "SELECT id, customer_tag, key_destroyed_at, state, regions FROM erasures WHERE state = 'running'"
            ).fetchall()
        )
        return [_erasure(r) for r in rows]

    # -- the reconciler's lease and checkpoint -------------------------------------------

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()

        def acquire(db):
            db.execute(
                "INSERT INTO leases (key, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE leases.until < ? OR leases.owner = excluded.owner",
                (key, owner, now + ttl, now),
            )
            return db.execute("SELECT owner FROM leases WHERE key = ?", (key,)).fetchone()[0] == owner

        return await self._tx(acquire)

    async def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        return await self._tx(
            lambda db: (
                db.execute("UPDATE leases SET until = ? WHERE key = ? AND owner = ?", (now + ttl, key, owner)).rowcount
                == 1
            )
        )

    async def release_lease(self, key: str, owner: str) -> None:
        await self._tx(lambda db: db.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner)))

    async def save_checkpoint(self, key: str, name: str) -> None:
        now = self._clock()
        await self._tx(
            lambda db: db.execute(
                "INSERT INTO checkpoints (key, name, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET name = excluded.name, updated = excluded.updated",
                (key, name, now),
            )
        )

    async def load_checkpoint(self, key: str) -> str | None:
        row = await self._tx(lambda db: db.execute("SELECT name FROM checkpoints WHERE key = ?", (key,)).fetchone())
        return row[0] if row else None

    async def clear_checkpoint(self, key: str) -> None:
        await self._tx(lambda db: db.execute("DELETE FROM checkpoints WHERE key = ?", (key,)))

    async def close(self) -> None:
        self._reader.close()
        with self._lock:
            self._db.close()


def _erasure(row) -> Erasure:
    id, customer_tag, destroyed_at, state, regions = row
    return Erasure(id, customer_tag, destroyed_at, state, json.loads(regions))
