"""PostgreSQL journals for tests: a fresh schema on the dev stack's server, dropped afterwards."""

from __future__ import annotations

import secrets

import asyncpg

from replicator.journal.postgres import parse_url

from .stack import stack_env


def fresh_url(prefix: str = "t", **options: str) -> str:
    """A journal URL on the dev stack's PostgreSQL with a schema of its own (created at first use)."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": f"{prefix}_{secrets.token_hex(6)}", **options}.items())
    return f"{stack_env('REPLICATOR_TEST_PG_DSN')}?{query}"


async def connect(url: str) -> asyncpg.Connection:
    """A plain connection to ``url``'s database with its schema on the search path."""
    target = parse_url(url)
    return await asyncpg.connect(
        target.dsn,
        password=target.password.get_secret_value() if target.password else None,
        server_settings={"search_path": target.schema},
    )


async def drop_schema(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{parse_url(url).schema}" CASCADE')
    finally:
        await conn.close()
