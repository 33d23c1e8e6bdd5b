"""The journal on PostgreSQL: several replicator processes share one backlog.

The URL is a libpq-style URL plus a few options of our own, which are taken
out before the rest goes to asyncpg::

    postgresql://replicator@db.internal:5432/replicator?password_env=REPLICATOR_JOURNAL_PASSWORD&schema=journal

* ``password_env``: the environment variable that holds the password. A
  password written in the URL itself is accepted here (tests) but refused by
  the config, so a config file never holds one. Without either, asyncpg's own
  sources apply (``PGPASSWORD``, ``~/.pgpass``).
* ``schema`` (default ``public``): where the tables live; created if missing.
* ``pool_max`` (default 10): connections per process.
* ``connect_timeout`` (seconds, default 10, per host) and ``command_timeout``
  (default 30): a database that does not answer is an error, never a hang.
* Several hosts (``db1:5432,db2:5432``): a primary and its standbys; each
  connection goes to the one that takes writes (``target_session_attrs``,
  :mod:`.pgurl`, :mod:`.pgconnect`).

Theory of operation:

* **Claims.** ``claim`` picks due rows whose lease has lapsed with
  ``FOR UPDATE SKIP LOCKED`` and stamps them with the claimer and a lease
  deadline in the same statement. Two claimers never wait on each other and
  never get the same row: a row locked by one is skipped by the other, and a
  row the other has just leased no longer matches (READ COMMITTED re-checks
  the condition on the newest version of a row it locks).
* **Leases.** A worker that dies keeps its rows until their lease lapses; then
  any claimer takes them. ``complete`` deletes a row only at the generation it
  was claimed at (``add`` bumps it), whoever holds the lease by then: the work
  of that generation is done. ``retry_later`` and the release after a failed
  ``complete`` touch the row only while its lease is still the caller's.
* **Completions.** Each ``complete`` that removes a row writes who did it into
  ``completions``, in the same transaction. Operators read it after a crash
  ("who finished what"); the multi-process test reads it to show that no row
  was completed twice. Rows older than a day are pruned.
* **Time** is the database server's clock (one clock for every process), unless
  a ``clock`` is given (tests move a fake one). Times are epoch seconds as in
  the SQLite journal.
* **Failover.** A call that finds the database gone (refused, hung, cut off
  mid-transaction, or read-only: a fenced old primary) fails as
  ``JournalUnavailable`` (not acknowledged; callers retry) and expires every
  pooled connection, so the next calls connect afresh to whichever host takes
  writes by then: the promoted standby, without a restart. A write that was
  acknowledged is on the standby too when the primary runs synchronous
  replication (``synchronous_commit = on`` and ``synchronous_standby_names``).
* **Migrations** run at the first call of each process, in one transaction
  under an advisory lock keyed by the schema: processes that start together
  apply each migration once; ``schema_version`` records what was applied. A
  database newer than this code is refused rather than misread.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from replicator.journal import Backlog, Erasure, JournalError, JournalUnavailable, Kind, Pending, RegionLag, Task
from replicator.journal.pgconnect import UNAVAILABLE
from replicator.journal.pgpool import PgPool
from replicator.journal.pgschema import LATEST, MIGRATIONS, migrate
from replicator.journal.pgurl import Target, check_url, parse_url

__all__ = ["LATEST", "MIGRATIONS", "PgJournal", "Target", "check_url", "migrate", "parse_url"]

T = TypeVar("T")

DONE_RETENTION = 86_400.0  # seconds a completion stays in ``completions``
_PRUNE_EVERY = 600.0


# $1 in every statement: the caller's clock, or NULL for the server's.
_NOW = "coalesce($1::float8, extract(epoch from statement_timestamp())::float8)"
_CLAIMED = "tasks.id, kind, name, src, dst, version, attempts, gen, last_error, coalesce(lease_owner, '')"


class PgJournal:
    """The :class:`~replicator.journal.Journal` on PostgreSQL; connects (and migrates) at the first call."""

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None):
        self.target = parse_url(url)
        self._db = PgPool(
            self.target,
            application="replicator-journal",
            migrate=lambda conn: migrate(conn, self.target.schema),
            error=self._error,
            passthrough=(JournalError,),
        )
        self._clock = clock
        self._next_prune = 0.0

    def __repr__(self) -> str:
        return f"PgJournal({self.target.shown!r}, schema={self.target.schema!r})"

    @property
    def host(self) -> str | None:
        """The host the newest connection went to (of a multi-host URL: the primary, last we knew)."""
        return self._db.connector.current

    # -- plumbing -----------------------------------------------------------------------

    async def open(self) -> PgJournal:
        """Connect and apply migrations now (otherwise the first call does)."""
        await self._db.ensure()
        return self

    def _error(self, what: str, e: BaseException) -> JournalError:
        if isinstance(e, LookupError):  # the password variable is not set
            return JournalError(f"journal {self.target.shown}: {e}")
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if isinstance(e, UNAVAILABLE):
            return JournalUnavailable(f"journal {self.target.shown} is unavailable ({what}): {detail}")
        if isinstance(e, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
            return JournalError(f"journal {self.target.shown}: authentication failed ({what}): {detail}")
        return JournalError(f"journal {self.target.shown}: {what} failed: {detail}")

    async def _run(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, tx: bool = False) -> T:
        return await self._db.run(what, fn, tx=tx)

    def _now(self) -> float | None:
        return self._clock() if self._clock is not None else None

    async def close(self) -> None:
        await self._db.close()

    # -- work rows ------------------------------------------------------------------------

    async def add(self, kind: Kind, name: str, *, src: str, dst: str, version: str = "", size: int = 0) -> None:
        await self._run(
            "add",
            lambda c: c.execute(
                "INSERT INTO tasks (kind, name, src, dst, version, size, created, next_try) "
                f"VALUES ($2, $3, $4, $5, $6, $7, {_NOW}, {_NOW}) "
                "ON CONFLICT (kind, name, dst) DO UPDATE SET "
                "  src = excluded.src, gen = tasks.gen + 1, next_try = least(tasks.next_try, excluded.next_try), "
                "  version = greatest(tasks.version, excluded.version), size = excluded.size",
                self._now(),
                kind,
                name,
                src,
                dst,
                version,
                size,
            ),
        )

    async def claim(self, owner: str, *, limit: int = 32, lease: float = 60.0) -> list[Task]:
        rows = await self._run(
            "claim",
            lambda c: c.fetch(
                f"WITH due AS ("
                f"  SELECT id FROM tasks WHERE next_try <= {_NOW} AND lease_until < {_NOW} "
                f"  ORDER BY next_try, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                f"UPDATE tasks SET lease_owner = $2, lease_until = {_NOW} + $3 FROM due WHERE tasks.id = due.id "
                f"RETURNING {_CLAIMED}",
                self._now(),
                owner,
                float(lease),
                limit,
            ),
        )
        return sorted((Task(*r) for r in rows), key=lambda t: t.id)

    async def complete(self, task: Task) -> bool:
        now = self._now()

        async def complete(c: asyncpg.Connection) -> bool:
            status = await c.execute(
                "WITH gone AS (DELETE FROM tasks WHERE id = $2 AND gen = $3 "
                "  RETURNING id, gen, kind, name, dst, lease_owner) "
                "INSERT INTO completions (task_id, gen, kind, name, dst, owner, lease_owner, done_at) "
                f"SELECT id, gen, kind, name, dst, $4, lease_owner, {_NOW} FROM gone",
                now,
                task.id,
                task.gen,
                task.owner,
            )
            if status.endswith(" 1"):
                return True
            # Work was added meanwhile: free the row for the next claim, if the lease is still ours.
            await c.execute(
                "UPDATE tasks SET lease_until = 0, lease_owner = NULL WHERE id = $1 AND lease_owner = $2",
                task.id,
                task.owner,
            )
            return False

        done = await self._run("complete", complete)
        if done and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_EVERY
            await self._run(
                "prune completions",
                lambda c: c.execute(f"DELETE FROM completions WHERE done_at < {_NOW} - $2", now, DONE_RETENTION),
            )
        return done

    async def retry_later(self, task: Task, error: str, delay: float) -> None:
        # Only while the lease is ours: a worker that re-claimed the row after ours lapsed owns it now.
        await self._run(
            "retry_later",
            lambda c: c.execute(
                f"UPDATE tasks SET attempts = attempts + 1, last_error = $2, next_try = {_NOW} + $3, "
                "lease_until = 0, lease_owner = NULL WHERE id = $4 AND lease_owner = $5",
                self._now(),
                error[:500],
                float(delay),
                task.id,
                task.owner,
            ),
        )

    async def backlog(self) -> Backlog:
        count, age = await self._run(
            "backlog",
            lambda c: c.fetchrow(
                f"SELECT count(*), coalesce(greatest({_NOW} - min(created), 0), 0) FROM tasks", self._now()
            ),
        )
        return Backlog(count, float(age))

    async def lag(self) -> list[RegionLag]:
        rows = await self._run(
            "lag",
            lambda c: c.fetch(
                f"SELECT dst, count(*) AS n, coalesce(sum(size), 0)::bigint AS bytes, "
                f"greatest({_NOW} - min(created), 0) AS age FROM tasks GROUP BY dst ORDER BY dst",
                self._now(),
            ),
        )
        return [RegionLag(r["dst"], r["n"], r["bytes"], float(r["age"])) for r in rows]

    async def behind(self, name: str) -> set[str]:
        rows = await self._run(
            "behind",
            lambda c: c.fetch(  # kind = any(...) lets the unique index answer
                "SELECT DISTINCT dst FROM tasks WHERE kind = any($1::text[]) AND name = $2",
                ["copy", "repair", "delete"],
                name,
            ),
        )
        return {r["dst"] for r in rows}

    # -- the operator's view ------------------------------------------------------------

    @staticmethod
    def _where(ids: Sequence[int] | None, dst: str | None, first: int) -> tuple[str, list[Any]]:
        clauses: list[str] = ["true"]
        args: list[Any] = []
        if ids is not None:
            args.append([int(i) for i in ids])
            clauses.append(f"id = any(${first + len(args) - 1}::bigint[])")
        if dst is not None:
            args.append(dst)
            clauses.append(f"dst = ${first + len(args) - 1}")
        return " AND ".join(clauses), args

    async def pending(
        self, *, ids: Sequence[int] | None = None, dst: str | None = None, limit: int = 100
    ) -> tuple[int, list[Pending]]:
        where, args = self._where(ids, dst, 1)

        async def pending(c: asyncpg.Connection):
            total = await c.fetchval(f"SELECT count(*) FROM tasks WHERE {where}", *args)
            rows = await c.fetch(
                "SELECT id, kind, name, src, dst, version, attempts, last_error, created, next_try, "
                f"coalesce(lease_owner, ''), lease_until FROM tasks WHERE {where} "
                f"ORDER BY next_try, id LIMIT ${len(args) + 1}",
                *args,
                limit,
            )
            return total, [Pending(*r) for r in rows]

        return await self._run("pending", pending, tx=True)

    async def retry_now(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        where, args = self._where(ids, dst, 2)
        status = await self._run(
            "retry_now",
            lambda c: c.execute(
                f"UPDATE tasks SET next_try = least(next_try, {_NOW}) WHERE {where}", self._now(), *args
            ),
        )
        return int(status.rsplit(" ", 1)[1])

    async def drop(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        where, args = self._where(ids, dst, 1)
        status = await self._run("drop", lambda c: c.execute(f"DELETE FROM tasks WHERE {where}", *args))
        return int(status.rsplit(" ", 1)[1])

    # -- erasures ---------------------------------------------------------------------------

    async def create_erasure(self, customer_tag: str, key_destroyed_at: str, regions: list[str]) -> Erasure:
        erasure = Erasure(
            id="er_" + secrets.token_hex(12),
            customer_tag=customer_tag,
            key_destroyed_at=key_destroyed_at,
            state="running",
            regions={r: {"deleted": 0, "remaining": -1} for r in regions},
        )
        await self._run(
            "create_erasure",
            lambda c: c.execute(
                "INSERT INTO erasures VALUES ($1, $2, $3, $4, $5::jsonb)",
                erasure.id,
                customer_tag,
                key_destroyed_at,
                erasure.state,
                json.dumps(erasure.regions),
            ),
        )
        return erasure

    async def update_erasure(self, id: str, region: str, *, deleted: int, remaining: int) -> None:
        # One statement: two processes updating different regions of one receipt cannot lose either.
        await self._run(
            "update_erasure",
            lambda c: c.execute(
                "UPDATE erasures SET regions = jsonb_set(regions, ARRAY[$2], $3::jsonb) WHERE id = $1",
                id,
                region,
                json.dumps({"deleted": deleted, "remaining": remaining}),
            ),
        )

    async def finish_erasure(self, id: str) -> None:
        await self._run("finish_erasure", lambda c: c.execute("UPDATE erasures SET state = 'done' WHERE id = $1", id))

    async def erasure(self, id: str) -> Erasure | None:
        row = await self._run(
            "erasure",
            lambda c: c.fetchrow(
                "SELECT id, customer_tag, key_destroyed_at, state, regions FROM erasures WHERE id = $1", id
            ),
        )
        return _erasure(row) if row else None

    async def running_erasures(self) -> list[Erasure]:
        rows = await self._run(
            "running_erasures",
            lambda c: c.fetch(
                "SELECT id, customer_tag, key_destroyed_at, state, regions FROM erasures "
                "WHERE state = 'running' ORDER BY id"
            ),
        )
        return [_erasure(r) for r in rows]

    # -- the reconciler's lease and checkpoint ------------------------------------------

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        row = await self._run(
            "acquire_lease",
            lambda c: c.fetchrow(
                f"INSERT INTO leases (key, owner, until) VALUES ($2, $3, {_NOW} + $4) "
                "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                f"WHERE leases.until < {_NOW} OR leases.owner = excluded.owner RETURNING owner",
                self._now(),
                key,
                owner,
                float(ttl),
            ),
        )
        return row is not None

    async def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        status = await self._run(
            "renew_lease",
            lambda c: c.execute(
                f"UPDATE leases SET until = {_NOW} + $2 WHERE key = $3 AND owner = $4",
                self._now(),
                float(ttl),
                key,
                owner,
            ),
        )
        return status == "UPDATE 1"

    async def release_lease(self, key: str, owner: str) -> None:
        await self._run(
            "release_lease", lambda c: c.execute("DELETE FROM leases WHERE key = $1 AND owner = $2", key, owner)
        )

    async def save_checkpoint(self, key: str, name: str) -> None:
        await self._run(
            "save_checkpoint",
            lambda c: c.execute(
                f"INSERT INTO checkpoints (key, name, updated) VALUES ($2, $3, {_NOW}) "
                "ON CONFLICT (key) DO UPDATE SET name = excluded.name, updated = excluded.updated",
                self._now(),
                key,
                name,
            ),
        )

    async def load_checkpoint(self, key: str) -> str | None:
        return await self._run(
            "load_checkpoint", lambda c: c.fetchval("SELECT name FROM checkpoints WHERE key = $1", key)
        )

    async def clear_checkpoint(self, key: str) -> None:
        await self._run("clear_checkpoint", lambda c: c.execute("DELETE FROM checkpoints WHERE key = $1", key))


def _erasure(row) -> Erasure:
    id, customer_tag, destroyed_at, state, regions = row
    return Erasure(id, customer_tag, destroyed_at, state, json.loads(regions))
