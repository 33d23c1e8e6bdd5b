"""One PostgreSQL URL's connections, the way every user of the shared database needs them.

The journal, the key store (``replicator.keystore``) and each node's cluster
session (``replicator.replication.cluster``) share this plumbing:

* the password by reference (``password_env``) or, in tests, in the URL;
* connections to whichever of the URL's hosts takes writes (:mod:`.pgconnect`);
* migrations once per pool, before its first call;
* a call that finds the database away drops every pooled connection, so the
  next call connects to whichever host takes writes by then (a failover);
* a connection the server cut off after a call (a dying primary's backends
  send FATAL on their way out) fails its release, not the call: the call's
  work is done (committed, or never started) and its answer stands;
* a connection goes back to the pool without asyncpg's reset query (a round
  trip per call): no pooled call changes the session (``SET LOCAL`` only, no
  ``LISTEN``, no session advisory lock: those live on connections of their
  own, :meth:`PgPool.connect`), and asyncpg still rolls back a transaction
  left open.

Errors go through the owner's ``error(what, exception)``, which names the
owner ("journal …", "key store …") and never a password.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from replicator.journal.pgconnect import UNAVAILABLE, Connector
from replicator.journal.pgurl import Target

T = TypeVar("T")


class PgPool:
    def __init__(
        self,
        target: Target,
        *,
        application: str,
        migrate: Callable[[asyncpg.Connection], Awaitable[Any]],
        error: Callable[[str, BaseException], Exception],
        passthrough: tuple[type[Exception], ...],
        what: str = "journal",
    ):
        self.target = target
        self.connector = Connector(target.hosts)
        self._application = application
        self._migrate = migrate
        self._error = error
        self._passthrough = passthrough  # the owner's own errors, raised on purpose inside a call
        self._what = what  # names the password in an error
        self.pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    def password(self) -> str | None:
        t = self.target
        if t.password_env:
            value = os.environ.get(t.password_env)
            if not value:
                raise LookupError(f"environment variable {t.password_env} (the {self._what} password) is not set")
            return value
        return t.password.get_secret_value() if t.password else None

    def _settings(self) -> dict[str, Any]:
        t = self.target
        return {
            "timeout": t.connect_timeout,
            "command_timeout": t.command_timeout,
            "server_settings": {"search_path": t.schema, "application_name": self._application},
        }

    async def ensure(self) -> asyncpg.Pool:
        """The pool, made and migrated on first use."""
        if self.pool is not None:
            return self.pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.pool is not None:
                return self.pool
            t = self.target
            try:
                pool = await asyncpg.create_pool(
                    t.dsn,
                    connect=self.connector,
                    password=self.password(),
                    min_size=1,
                    max_size=t.pool_max,
                    reset=_session_unchanged,
                    **self._settings(),
                )
            except LookupError as e:
                raise self._error("connect", e) from None
            except Exception as e:
                raise self._error("connect", e) from e
            try:
                async with pool.acquire(timeout=t.connect_timeout) as conn:
                    await self._migrate(conn)
            except BaseException as e:
                pool.terminate()
                if isinstance(e, Exception) and not isinstance(e, self._passthrough):
                    raise self._error("migrate", e) from e
                raise
            self.pool = pool
            return pool

    async def connect(self, application: str) -> asyncpg.Connection:
        """One connection of the caller's own (not pooled), to the host that takes writes."""
        try:
            settings = self._settings()
            settings["server_settings"] = {**settings["server_settings"], "application_name": application}
            return await self.connector(self.target.dsn, password=self.password(), **settings)
        except LookupError as e:
            raise self._error("connect", e) from None
        except Exception as e:
            raise self._error("connect", e) from e

    async def run(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, tx: bool = False) -> T:
        """``fn`` on a pooled connection (in a transaction if ``tx``); failures through ``error``."""
        pool = await self.ensure()
        try:
            conn = await pool.acquire(timeout=self.target.connect_timeout)
            try:
                if tx:
                    async with conn.transaction():
                        result = await fn(conn)
                else:
                    result = await fn(conn)
            finally:
                await _release(pool, conn)
        except self._passthrough:
            raise
        except Exception as e:
            if isinstance(e, UNAVAILABLE):
                # The server may be gone for good (a failover): drop every pooled connection to it;
                # the next calls connect to whichever host takes writes by then.
                await pool.expire_connections()
            raise self._error(what, e) from e
        return result

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            try:
                await asyncio.wait_for(pool.close(), self.target.connect_timeout)
            except UNAVAILABLE:  # TimeoutError among them
                pool.terminate()  # a database that hangs must not hang our shutdown


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Back to the pool; a connection the server cut off after the call fails here, not the call."""
    try:
        await pool.release(conn)
    except Exception:
        await pool.expire_connections()  # its siblings are likely on the same dying server


async def _session_unchanged(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo (module doc)."""
