"""The failover tests' own PostgreSQL: a primary and its synchronous streaming standby, made fresh by
``deploy/dev/stack pg-pair up`` on ports of their own and removed afterwards, so the shared server the
other suites use never sees a failover."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from replicator.journal.pgurl import parse_url

from .stack import stack_command


class PgPair:
    """The pair's URL (both nodes, read-write) and the crash and promotion the tests inflict on it."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        target = parse_url(dsn)
        self.primary, self.standby = (f"{h}:{p}" for h, p in target.hosts)
        self.password = target.password.get_secret_value() if target.password else ""

    def url(self, prefix: str = "fo", **options: str) -> str:
        """The multi-host journal URL with a fresh schema (and ``options``)."""
        query = "&".join(f"{k}={v}" for k, v in {"schema": f"{prefix}_{secrets.token_hex(6)}", **options}.items())
        return f"{self.dsn}&{query}"

    async def connect(self, node: str, schema: str) -> asyncpg.Connection:
        """A plain connection to one node (``self.primary`` or ``self.standby``), the schema on its path."""
        target = parse_url(self.dsn)
        host, port = node.rsplit(":", 1)
        return await asyncpg.connect(
            target.dsn,
            host=host,
            port=int(port),
            password=self.password,
            target_session_attrs="any",
            server_settings={"search_path": schema},
        )

    async def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend: a crash of its machine."""
        await asyncio.to_thread(stack_command, "pg-pair", "kill", "primary")

    async def promote(self) -> None:
        """``pg_ctl promote -w`` on the standby: it takes writes when this returns."""
        await asyncio.to_thread(stack_command, "pg-pair", "promote")
