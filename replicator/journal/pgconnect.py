"""Connecting to whichever of a URL's hosts takes writes now: a primary and its standbys, across a failover.

asyncpg tries a multi-host URL's hosts in order, like libpq, but within one
timeout for all of them: a host that hangs (a crashed machine, a partition)
would use it up and hide the next one for good. So each host is tried here on
its own, with the whole ``connect_timeout``, and the host that accepted last
is tried first: after a failover, new connections do not wait on the old
primary one by one. ``target_session_attrs`` (in the DSN) is checked by
asyncpg for each host; a standby that is not yet promoted is passed over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

# What "the database is not there (or not writable here, now)" looks like: retrying later may work.
# Anything else is a bug or a refusal worth its own message.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, recovering
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # every host is a standby (a promotion under way)
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # this server stopped taking writes (fenced, demoted)
    # A connection whose protocol is in a state asyncpg cannot use: what a server's FATAL on its way
    # out (a shutdown, a dying primary) leaves behind before the socket closes.
    asyncpg.exceptions.InternalClientError,
)


class NoHostAccepted(ConnectionError):
    """None of the URL's hosts took a writable session; each host's reason is in the message."""


def show(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


class Connector:
    """``asyncpg.create_pool(connect=...)``: one connection to the first host that takes it."""

    def __init__(self, hosts: tuple[tuple[str, int | None], ...]):
        self._hosts = hosts
        self._first = 0
        self.current: str | None = None  # the host the newest connection went to

    async def __call__(self, dsn: str, **kwargs: Any) -> asyncpg.Connection:
        if len(self._hosts) < 2:
            conn = await asyncpg.connect(dsn, **kwargs)
            self.current = show(*self._hosts[0]) if self._hosts else None
            return conn
        failures: list[tuple[str, Exception]] = []
        for k in range(len(self._hosts)):
            i = (self._first + k) % len(self._hosts)
            host, port = self._hosts[i]
            try:
                conn = await asyncpg.connect(dsn, host=host, port=port, **kwargs)
            except Exception as e:  # the next host may take it; the reasons are reported below
                failures.append((show(host, port), e))
                continue
            self._first, self.current = i, show(host, port)
            return conn
        for _, error in failures:
            if not isinstance(error, UNAVAILABLE):
                raise error  # a refusal (authentication, configuration) says more than "unavailable"
        reasons = "; ".join(f"{h}: {_reason(error)}" for h, error in failures)
        raise NoHostAccepted(f"no host took a writable session: {reasons}")


def _reason(e: Exception) -> str:
    if isinstance(e, asyncpg.exceptions.TargetServerAttributeNotMatched):
        return "not writable (a standby)"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
