"""The PostgreSQL journal's schema: its migrations, applied once each, in order, by whichever process
comes first (an advisory lock keyed by the schema serializes processes that start together)."""

from __future__ import annotations

import asyncpg

from replicator.journal.contract import JournalError

# Each entry runs once, in order, in the transaction that records it in schema_version.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    name        text COLLATE "C" NOT NULL,
    src         text NOT NULL,
    dst         text NOT NULL,
    version     text COLLATE "C" NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    gen         integer NOT NULL DEFAULT 0,
    last_error  text NOT NULL DEFAULT '',
    created     double precision NOT NULL,
    next_try    double precision NOT NULL,
    lease_owner text,
    lease_until double precision NOT NULL DEFAULT 0,
    UNIQUE (kind, name, dst)
);
CREATE INDEX tasks_due ON tasks (next_try, id);
CREATE TABLE completions (
    task_id     bigint NOT NULL,
    gen         integer NOT NULL,
    kind        text NOT NULL,
    name        text COLLATE "C" NOT NULL,
    dst         text NOT NULL,
    owner       text NOT NULL,
    lease_owner text,
    done_at     double precision NOT NULL
);
CREATE INDEX completions_done_at ON completions (done_at);
CREATE TABLE erasures (
    id               text PRIMARY KEY,
    customer_tag     text NOT NULL,
    key_destroyed_at text NOT NULL,
    state            text NOT NULL,
    regions          jsonb NOT NULL
);
CREATE TABLE leases (
    key   text PRIMARY KEY,
    owner text NOT NULL,
    until double precision NOT NULL
);
CREATE TABLE checkpoints (
    key     text PRIMARY KEY,
    name    text COLLATE "C" NOT NULL,
    updated double precision NOT NULL
);
""",
    ),
    (
        2,
        """
CREATE TABLE nodes (
    node_id    text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE TABLE name_versions (
    name    text COLLATE "C" PRIMARY KEY,
    version text COLLATE "C" NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX name_versions_at ON name_versions (at);
""",
    ),
    (3, "ALTER TABLE tasks ADD COLUMN size bigint NOT NULL DEFAULT 0;"),  # pending bytes (the lag SLO)
]
LATEST = MIGRATIONS[-1][0]


async def migrate(
    conn: asyncpg.Connection,
    schema: str,
    *,
    migrations: list[tuple[int, str]] = MIGRATIONS,
    component: str = "journal",
    version_table: str = "schema_version",
) -> int:
    """Bring ``schema`` to the last of ``migrations``; safe when several processes call it at once.
    Returns the version. Another component sharing the database (the key store) passes its own
    migrations and ``version_table``, so the two never mistake each other's tables."""
    latest = migrations[-1][0]
    q = f'"{schema}"'  # checked against _SCHEMA_NAME by parse_url
    table = f"{q}.{version_table}"
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"replicator.{component}:{schema}")
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"CREATE SCHEMA {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}")
        if current > latest:
            raise JournalError(
                f"{component} schema {schema!r} is at version {current}, newer than this "
                f"replicator knows ({latest}): upgrade replicator"
            )
        await conn.execute(f"SET LOCAL search_path TO {q}")
        for version, sql in migrations:
            if version > current:
                await conn.execute(sql)
                await conn.execute(f"INSERT INTO {table} (version) VALUES ($1)", version)
        return max(current, latest)
