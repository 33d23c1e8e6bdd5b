"""A node's session with its cluster: a unique node id, and name locks every node honours.

Nodes of a cluster share the journal's PostgreSQL. Each keeps one
connection of its own for this session and takes, on it, PostgreSQL
*session advisory locks*: one on its node id for as long as it runs, and one
on each object name while it writes or copies that name. A node that dies,
however it dies, closes that connection and so frees its id and its names at
once: no lease to wait out after a SIGKILL.

* **Node ids are unique.** ``open`` refuses (``NodeIdTaken``) while another
  running node holds the id, and says where it runs (``nodes``).
* **One writer of a name in the whole cluster.** ``hold`` takes the
  process's own lock first (one waiter per node reaches the database), then
  the cluster's, polling ``pg_try_advisory_lock`` with a short backoff (a
  blocking ``pg_advisory_lock`` would stall the one connection every write
  of this node shares). ``If-None-Match: *`` checks and writes under it, so
  exactly one of N concurrent creates through N nodes wins.
* **Versions increase along the lock.** The newest version written to a name
  is kept in ``name_versions`` and handed to the next holder as its floor
  (:class:`~replicator.replication.locks.Hold`): overwrites through nodes with
  different clocks still carry increasing versions, so both regions converge
  on the last write. The holder commits the version *before* it frees the
  name, and the next holder reads it in a statement begun after it took the
  lock: a node polling for the name takes it the moment it is free, so any
  other order could hand it a floor below the last write. Rows older than
  ``FLOOR_KEEP`` are pruned: by then any node's clock is past them (clocks
  are NTP-kept within far less).
* **Losing the session fails the write.** If the connection drops while a
  name is held (the database restarted or failed over), the lock may already
  be someone else's: the holder's release raises ``LockLost`` and the write
  is answered 503 (not acknowledged); the client's retry finds the object as
  it is. The version it wrote is still kept, on a new connection: it may have
  reached a region, so the next holder's floor must be above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from replicator.errors import ServiceUnavailable
from replicator.journal.pgpool import PgPool
from replicator.journal.pgschema import migrate
from replicator.journal.pgurl import Target, parse_url
from replicator.journal.together import Together
from replicator.replication.locks import Hold, NameLocks

log = logging.getLogger("replicator.replication.cluster")

FLOOR_KEEP = 600.0  # seconds a name's last version is kept as the next writer's floor
_PRUNE_EVERY = 60.0


class ClusterError(ServiceUnavailable):
    """The cluster session cannot do what was asked (503); the message says why."""


class NodeIdTaken(ClusterError):
    """Another running node holds this node id."""


class LockLost(ClusterError):
    """The session ended while a name was held: the write must not be acknowledged (503)."""


class LockBusy(ClusterError):
    """Another node held the name for longer than the wait allowed (503)."""


def _key(text: str) -> int:
    """A signed 64-bit advisory-lock key for ``text`` (a collision only makes two names wait on each other)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _keep_versions(rows: str) -> str:
    """The statement that keeps names' newest versions (never lowering one), from ``rows`` (name, version)."""
    return (
        f"INSERT INTO name_versions (name, version) {rows} ON CONFLICT (name) "
        "DO UPDATE SET version = greatest(name_versions.version, excluded.version), at = now()"
    )


# Each step of a hold, for every hold waiting on it at once (answers in the items' order).
_KINDS = ("keep", "unlock", "lock", "floor")  # freeing names first: others may wait for them
_MANY = {
    "lock": "SELECT pg_try_advisory_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i",
    "floor": (
        "SELECT (SELECT version FROM name_versions WHERE name = t.n) "
        "FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i"
    ),
    "keep": _keep_versions("SELECT t.n, t.v FROM unnest($1::text[], $2::text[]) AS t(n, v)"),
    "unlock": "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, i) ORDER BY i",
}


class ClusterSession:
    """Open with ``await ClusterSession(url, node_id).open()``; ``close`` frees the id and every name."""

    def __init__(self, url: str, node_id: str, *, claim: bool = True, wait: float = 30.0):
        self.target: Target = parse_url(url)
        self.node_id = node_id
        self.claim = claim  # a command run beside the node shares its locks, not its id
        self.wait = wait
        self._conn: asyncpg.Connection | None = None
        self._generation = 0  # bumped at each new connection: holds from an older one are lost
        self._talk = asyncio.Lock()  # one statement at a time on the one connection
        self._local = NameLocks()
        self._db = PgPool(  # only its connector is used: the session keeps one connection of its own
            self.target,
            application=f"replicator-node-{node_id}",
            migrate=lambda conn: migrate(conn, self.target.schema),
            error=lambda what, e: ClusterError(
                f"cluster session on {self.target.shown}: {what}: {type(e).__name__}: {e}"
            ),
            passthrough=(ClusterError,),
        )
        self._next_prune = 0.0
        # Concurrent holds' statements go out together: one round trip for every name waiting.
        self._together: Together[Any, tuple[Any, int]] = Together(_KINDS, self._say_many)

    def __repr__(self) -> str:
        return f"ClusterSession({self.target.shown!r}, node={self.node_id!r})"

    async def open(self) -> ClusterSession:
        """Connect and claim the node id; ``NodeIdTaken`` if a running node holds it."""
        async with self._talk:
            try:
                await self._connect()
            except ClusterError:
                raise
            except Exception as e:
                raise ClusterError(f"cluster session on {self.target.shown}: {type(e).__name__}: {e}") from None
        return self

    async def close(self) -> None:
        self._together.fail(ClusterError(f"cluster session on {self.target.shown} closed"))
        async with self._talk:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), self.target.connect_timeout)
                except Exception:
                    conn.terminate()

    async def _connect(self) -> asyncpg.Connection:
        """The session's connection (call with ``_talk`` held), made and claimed if there is none."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        t = self.target
        conn = await self._db.connect(f"replicator-node-{self.node_id}")
        try:
            await migrate(conn, t.schema)
            if self.claim:
                await self._claim(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._generation += 1
        return conn

    async def _claim(self, conn: asyncpg.Connection) -> None:
        """Take the node id for this connection's life, or say who runs with it."""
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _key(f"replicator.node:{self.node_id}")):
            row = await conn.fetchrow("SELECT host, pid, started_at FROM nodes WHERE node_id = $1", self.node_id)
            where = (
                f" (host {row['host']}, pid {row['pid']}, since {row['started_at']:%Y-%m-%d %H:%M:%S%z})" if row else ""
            )
            raise NodeIdTaken(f"node id {self.node_id!r} is taken by a running node{where}: give this node another")
        await conn.execute(
            "INSERT INTO nodes (node_id, host, pid, started_at) VALUES ($1, $2, $3, now()) "
            "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = now()",
            self.node_id,
            socket.gethostname(),
            os.getpid(),
        )

    async def _say(self, sql: str, *args: object, rows: bool = False) -> tuple[Any, int]:
        """One statement on the session's connection: (its value, or its rows' first values with
        ``rows``; the connection's generation). A connection that fails is dropped, and the next
        statement makes (and claims) a new one."""
        async with self._talk:
            try:
                conn = await self._connect()
                if rows:
                    return [r[0] for r in await conn.fetch(sql, *args)], self._generation
                return await conn.fetchval(sql, *args), self._generation
            except ClusterError:
                raise
            except Exception as e:
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                raise ClusterError(f"cluster session on {self.target.shown}: {type(e).__name__}") from e

    async def _say_many(self, kind: str, items: list[Any]) -> list[tuple[object, int]]:
        """One statement for every hold's ``kind`` step waiting (``Together``): per item, its answer
        and the connection's generation."""
        if kind == "keep":  # one row per name (a name is held once, by one holder, at a time)
            newest: dict[str, str] = {}
            for name, version in items:
                newest[name] = max(version, newest.get(name, version))
            _, generation = await self._say(_MANY[kind], list(newest), list(newest.values()))
            return [(None, generation)] * len(items)
        values, generation = await self._say(_MANY[kind], items, rows=True)
        return [(value, generation) for value in values]

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[Hold]:
        """Hold ``name`` in the whole cluster (see the module docstring)."""
        async with self._local.hold(name):
            key = _key(name)
            floor, generation = await self._acquire(key, name)
            held = Hold(floor)
            try:
                yield held
            except BaseException:
                await self._release(key, name, held, generation, failed=True)
                raise
            await self._release(key, name, held, generation, failed=False)

    async def _acquire(self, key: int, name: str) -> tuple[str | None, int]:
        deadline = time.monotonic() + self.wait
        pause = 0.001
        while True:
            got, generation = await self._taking(key, self._together.submit("lock", key))
            if got:
                # The floor in a statement of its own: its snapshot is taken after the lock was, so it
                # sees the version the last holder committed before freeing the name (_release).
                step = self._together.submit("floor", name)
                floor, now = await self._taking(key, step, holding_on=generation)
                if now == generation:
                    return (str(floor) if floor is not None else None), generation
                continue  # the connection changed in between, and the lock went with the old one
            if time.monotonic() + pause > deadline:
                raise LockBusy(f"another node held the name for over {self.wait:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _taking(
        self, key: int, step: asyncio.Future[tuple[Any, int]], *, holding_on: int | None = None
    ) -> tuple[Any, int]:
        """Await a step of taking ``key``: the lock (answers whether it took it), or the floor read
        while ``holding_on`` that connection. Cancelled meanwhile, the step still goes out: wait for
        its answer and free the name if it is held, before the name's local lock is let go (the
        session's locks count: one unlock too few leaves the name taken, one too many frees
        another holder's)."""
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                value, generation = await step
                if value if holding_on is None else generation == holding_on:
                    await self._together("unlock", key)
            raise

    async def _release(self, key: int, name: str, held: Hold, generation: int, *, failed: bool) -> None:
        """Record what was written, then unlock; ``LockLost`` if a write was made under a lock the
        session lost (unless the holder failed anyway: its own error is the answer)."""
        freeing = asyncio.ensure_future(self._free(key, name, held.written, generation))
        try:
            lost = await asyncio.shield(freeing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await freeing  # cancelled or not, the name is freed before its local lock is let go
            raise
        if lost and held.written is not None and not failed:
            raise LockLost("the cluster session ended while the name was held: the write is not acknowledged, retry it")
        if not failed:
            await self._prune()

    async def _free(self, key: int, name: str, written: str | None, generation: int) -> bool:
        """Keep ``written`` as the name's version, then free the name; whether the lock was lost."""
        kept = written is None
        try:
            if written is not None:
                # Committed before the name is freed: a node polling for the name takes it the moment
                # it is free and must find this version. One statement for both freed the name
                # before its own commit, and the next holder could read the floor below it.
                _, now = await self._together("keep", (name, written))
                kept = True
                if now != generation:
                    return True  # on a new connection: the lock went with the old one
            unlocked, now = await self._together("unlock", key)
            return now != generation or not unlocked
        except ClusterError as e:
            log.warning("cluster session lost at unlock", extra={"error": str(e)})
            if not kept and written is not None:
                await self._record_after_loss(name, written)
            return True

    async def _record_after_loss(self, name: str, version: str) -> None:
        """Record a version written under a lost lock, on a new connection (the lock died with the
        old one): the write may have reached a region, so the next holder's floor must be above it."""
        try:
            await self._say(_keep_versions("VALUES ($1, $2)"), name, version)
        except ClusterError as e:
            log.error("the version written under a lost lock was not recorded", extra={"error": str(e)})

    async def _prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        try:
            await self._say(
                "WITH gone AS (DELETE FROM name_versions WHERE at < now() - make_interval(secs => $1)) SELECT 1",
                FLOOR_KEEP,
            )
        except ClusterError as e:
            log.warning("pruning name versions failed", extra={"error": str(e)})
