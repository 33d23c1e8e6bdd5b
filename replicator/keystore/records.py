"""The key store's records as the keyring's typed values: connect and migrate, read and write the
ring (KEK versions, link, index key), the statements that read a customer's keys, and destroy a
DEK row. Callers hold the transaction."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from keys.keyring import codec, deks
from keys.keyring import kek as keks
from keys.keyring.state import KeyringState, Wrapped, WrappedDek
from keys.provider import (
    KEY_BYTES,
    DataKey,
    KekSource,
    KeyDestroyed,
    KeyringCorrupt,
    KeyringError,
    KeyStoreUnavailable,
    Tombstone,
)
from replicator.journal.pgconnect import UNAVAILABLE
from replicator.journal.pgpool import PgPool
from replicator.journal.pgschema import migrate
from replicator.journal.pgurl import Target
from replicator.keystore.schema import MIGRATIONS, VERSION_TABLE

# A customer's current keys, to make them under its row's lock (make_pair).
CUSTOMER_KEYS = (
    "SELECT c.erased_at, c.erased_dek, c.dek_id, d.kek, d.wrapped, d.name_key FROM key_customers c "
    "LEFT JOIN key_deks d ON d.dek_id = c.dek_id WHERE c.customer_tag = $1"
)


# A customer's keys, and a read's keys with its customer's erasure (keys_for_read), for many at
# once: one row per item, in the items' order (a missing customer: NULLs).
CUSTOMER_KEYS_MANY = (
    "SELECT c.erased_at, c.erased_dek, c.dek_id, d.kek, d.wrapped, d.name_key "
    "FROM unnest($1::text[]) WITH ORDINALITY AS t(tag, i) LEFT JOIN key_customers c ON c.customer_tag = t.tag "
    "LEFT JOIN key_deks d ON d.dek_id = c.dek_id ORDER BY t.i"
)
READ_KEYS_MANY = (
    "SELECT c.erased_at, d.kek, d.wrapped, d.name_key, d.destroyed_at "
    "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(dek, tag, i) LEFT JOIN key_deks d ON d.dek_id = t.dek "
    "LEFT JOIN key_customers c ON c.customer_tag = t.tag ORDER BY t.i"
)


async def read_many(conn: asyncpg.Connection, kind: str, items: list[Any]) -> list[Any]:
    """One statement for every ``kind`` read waiting (``"customer"``: customer tags; ``"read"``:
    (DEK id, customer tag) pairs), a row per item."""
    if kind == "customer":
        return list(await conn.fetch(CUSTOMER_KEYS_MANY, items))
    return list(await conn.fetch(READ_KEYS_MANY, [dek for dek, _ in items], [tag for _, tag in items]))


async def destroy_dek(conn: asyncpg.Connection, dek_id: str, when: datetime) -> bool:
    """The wrapped key and name key leave the row, its id and time stay; True if it was alive."""
    status = await conn.execute(
        "UPDATE key_deks SET kek = NULL, wrapped = NULL, name_key = NULL, destroyed_at = $2 "
        "WHERE dek_id = $1 AND destroyed_at IS NULL",
        dek_id,
        when,
    )
    return status != "UPDATE 0"


def database(target: Target) -> PgPool:
    """The key store's connections: the journal's plumbing (failover included), its own migrations."""
    where = f"{target.shown} (schema {target.schema})"

    def error(what: str, e: BaseException) -> Exception:
        if isinstance(e, LookupError):  # the password variable is not set
            return KeyringError(f"key store {where}: {e}")
        if isinstance(e, UNAVAILABLE):
            return KeyStoreUnavailable(f"key store {where} is unavailable ({what}): {type(e).__name__}")
        return KeyringError(f"key store {where}: {what} failed: {type(e).__name__}")

    return PgPool(
        target,
        application="replicator-keys",
        migrate=lambda conn: migrate(
            conn, target.schema, migrations=MIGRATIONS, component="keystore", version_table=VERSION_TABLE
        ),
        error=error,
        passthrough=(KeyringError,),
        what="key store",
    )


async def load_or_create(conn: asyncpg.Connection, kek: KekSource | None, where: str) -> KeyringState:
    """The ring's records; made (current KEK version 1, a new index key) if missing and ``kek`` is given
    (call in a transaction)."""
    if not await conn.fetchval("SELECT true FROM key_ring"):
        if kek is None:
            raise KeyringError(f"key store {where} holds no keys yet")
        entry, kek_bytes = keks.new_version(kek, 1)
        index = Wrapped(1, keks.seal(kek_bytes, os.urandom(KEY_BYTES), keks.INDEX_KEY_AD))
        # Two nodes starting at once: the first insert wins, the other reads the winner's.
        made = await conn.fetchval(
            "INSERT INTO key_ring (kek_current, index_key) VALUES (1, $1) ON CONFLICT DO NOTHING RETURNING true",
            codec.encode_piece(index),
        )
        if made:
            await conn.execute("INSERT INTO key_keks (version, entry) VALUES (1, $1)", codec.encode_piece(entry))
    return await ring_of(conn, "")


async def ring_of(conn: asyncpg.Connection, lock: str) -> KeyringState:
    """The ring's records as a ``KeyringState`` without DEKs (``lock``: "", "FOR SHARE", "FOR UPDATE")."""
    row = await conn.fetchrow(f"SELECT kek_current, index_key, link FROM key_ring {lock}")
    versions = await conn.fetch("SELECT version, entry FROM key_keks")
    try:
        return KeyringState(
            kek_current=row["kek_current"],
            kek_versions={v["version"]: codec.decode_kek_version(v["entry"]) for v in versions},
            index_key=codec.decode_wrapped(row["index_key"]),
            deks={},
            customers={},
            destroyed={},
            erased={},
            link=None if row["link"] is None else codec.decode_link(row["link"]),
        )
    except ValueError:
        raise KeyringCorrupt("the key store's KEK records are damaged") from None


async def with_deks(conn: asyncpg.Connection, ring: KeyringState) -> KeyringState:
    """``ring`` with every live (wrapped) DEK, as the rotation transitions take it."""
    rows = await conn.fetch("SELECT dek_id, kek, wrapped, created_at, name_key FROM key_deks WHERE wrapped IS NOT NULL")
    return replace(
        ring,
        deks={r["dek_id"]: WrappedDek(r["kek"], r["wrapped"], r["created_at"], r["name_key"]) for r in rows},
    )


async def save_ring(conn: asyncpg.Connection, ring: KeyringState) -> None:
    """Write the ring's records (not its DEKs) as ``ring`` holds them."""
    await conn.execute(
        "UPDATE key_ring SET kek_current = $1, index_key = $2, link = $3",
        ring.kek_current,
        codec.encode_piece(ring.index_key),
        None if ring.link is None else codec.encode_piece(ring.link),
    )
    await conn.execute("DELETE FROM key_keks WHERE NOT (version = ANY($1::integer[]))", list(ring.kek_versions))
    await conn.executemany(
        "INSERT INTO key_keks (version, entry) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
        [(v, codec.encode_piece(e)) for v, e in ring.kek_versions.items()],
    )


async def read_state(conn: asyncpg.Connection) -> KeyringState:
    """Every record as one ``KeyringState`` (wrapped keys stay wrapped): what the keyring file would hold."""
    ring = await with_deks(conn, await ring_of(conn, ""))
    dead = await conn.fetch("SELECT dek_id, destroyed_at FROM key_deks WHERE destroyed_at IS NOT NULL")
    customers = await conn.fetch("SELECT customer_tag, dek_id, erased_at, erased_dek FROM key_customers")
    return replace(
        ring,
        customers={c["customer_tag"]: c["dek_id"] for c in customers if c["dek_id"] is not None},
        destroyed={d["dek_id"]: d["destroyed_at"] for d in dead},
        erased={
            c["customer_tag"]: Tombstone(c["erased_at"], c["erased_dek"])
            for c in customers
            if c["erased_at"] is not None
        },
    )


async def make_pair(
    conn: asyncpg.Connection, ctag: str, follow: Callable[[KeyringState], bytes], where: str
) -> DataKey | Any:
    """A new DEK and name key for ``ctag`` (or a name key for its DEK made before name keys), or
    the row of the pair another node made first; ``follow`` gives the KEK of the ring read here."""
    await conn.execute("INSERT INTO key_customers (customer_tag) VALUES ($1) ON CONFLICT DO NOTHING", ctag)
    row = await conn.fetchrow(CUSTOMER_KEYS + " FOR UPDATE OF c", ctag)
    refuse_if_erased(row)
    if row["dek_id"] is not None and row["name_key"] is not None:  # made elsewhere; opened off this loop
        return row
    ring = await ring_of(conn, "FOR SHARE")
    kek = follow(ring)
    name_key = os.urandom(KEY_BYTES)
    dek_id = row["dek_id"]
    if dek_id is not None:  # made before name keys: give it one, once
        if row["kek"] != ring.kek_current:
            raise KeyringCorrupt(f"data key {dek_id} in key store {where} is not under the current KEK")
        wrapped = Wrapped(row["kek"], row["wrapped"])
        key = keks.unwrap(kek, ring.kek_current, wrapped, keks.dek_ad(dek_id), f"data key {dek_id}", where)
        await conn.execute(
            "UPDATE key_deks SET name_key = $2 WHERE dek_id = $1",
            dek_id,
            keks.seal(kek, name_key, keks.name_key_ad(dek_id)),
        )
    else:
        dek_id, key = deks.new_id(), os.urandom(KEY_BYTES)
        await conn.execute(
            "INSERT INTO key_deks (dek_id, customer_tag, kek, wrapped, created_at, name_key) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            dek_id,
            ctag,
            ring.kek_current,
            keks.seal(kek, key, keks.dek_ad(dek_id)),
            keks.now(),
            keks.seal(kek, name_key, keks.name_key_ad(dek_id)),
        )
        await conn.execute("UPDATE key_customers SET dek_id = $2 WHERE customer_tag = $1", ctag, dek_id)
    return DataKey(dek_id, key, name_key)


def refuse_if_erased(row: Any) -> None:
    """``KeyDestroyed`` if ``row`` (``CUSTOMER_KEYS``, ``READ_KEYS``) says its customer is erased."""
    if row["erased_at"] is not None:
        when = row["erased_at"]
        raise KeyDestroyed(f"this customer was erased at {when.isoformat()}; reinstate before writing again", when)
