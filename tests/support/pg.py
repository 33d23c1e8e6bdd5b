"""PostgreSQL journals for tests: a fresh schema on the dev stack's server, dropped afterwards."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from replicator.embedded import ensure
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


#: The key store's tables (replicator.keystore.schema), in the order a restore inserts them.
KEY_TABLES = ("key_ring", "key_keks", "key_deks", "key_customers")


async def backup_tables(conn: asyncpg.Connection, tables=KEY_TABLES) -> dict[str, list]:
    """Every row of ``tables``: what an operator's backup keeps."""
    return {t: await conn.fetch(f"SELECT * FROM {t}") for t in tables}


async def restore_tables(conn: asyncpg.Connection, backup: dict[str, list]) -> None:
    """Put ``backup`` back in place of what the tables hold now, in one transaction."""
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(backup)}")
        for table, rows in backup.items():
            if rows:
                columns = list(rows[0].keys())
                await conn.copy_records_to_table(table, records=[tuple(r) for r in rows], columns=columns)


def key_store_config(var: Path, prefix: str, monkeypatch) -> tuple[Path, str | None, str]:
    """The embedded default's config under ``var``, its [keys] pointed at a key store of its own
    (password by reference, set in the environment): the config, the development token (handed
    out once) and the store's URL (drop its schema afterwards)."""
    url = fresh_url(prefix)
    parts = urlsplit(url)
    monkeypatch.setenv("TEST_KEYSTORE_PASSWORD", parts.password or "")
    by_reference = url.replace(f":{parts.password}@", "@") + "&password_env=TEST_KEYSTORE_PASSWORD"
    config, token = ensure(var)
    config.write_text(config.read_text().replace('keyring = "keyring.json"', f'store = "{by_reference}"'))
    return config, token, url
