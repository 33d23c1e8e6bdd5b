"""The key store on PostgreSQL: a ``KeyProvider`` every node of a cluster shares.

Theory of operation
-------------------
The records are those of the keyring file (``keys.keyring.state``), one row
each (:mod:`.schema`): the KEK versions and rotation link and index key in
``key_ring``/``key_keks``, each DEK in ``key_deks``, each customer's current
DEK and tombstone in ``key_customers``; a DEK's name key (``keys.tags``) is a column of its
row, so it is made, destroyed, reapplied and rewrapped with the DEK. Keys are sealed under the KEK exactly
as in the file (``keys.keyring.kek``); rotation is the file's own transition
(``keys.keyring.rotation``) applied to the rows in one transaction.

**Erasure reaches every node at once.** A node keeps unwrapped DEKs in memory
only to skip the unwrap: every ``get_dek`` and ``get_or_create_dek`` asks the
database whether the key is still alive, so once ``destroy`` commits, no node
hands out that key again, whatever it cached (no TTL to wait out). A node
that cannot ask (the database is away) raises ``KeyStoreUnavailable``: the
caller refuses the decrypt (fail closed). ``dek_at_hand``/``key_at_hand``
therefore never answer from memory alone.

**Mutations serialise in the database**: the first DEK of a customer, a
destroy or a reinstate lock the customer's row (``FOR UPDATE``); a new DEK is
wrapped under the current KEK read ``FOR SHARE`` from ``key_ring``, which a
rotation locks ``FOR UPDATE``, so no DEK is ever wrapped under a KEK the
rotation just replaced. A node that finds the KEK rotated follows the link
with the KEK it holds, as a process sharing a keyring file does.

The ``KeyProvider`` calls are synchronous; the asyncpg pool lives on a
private loop thread (:mod:`.loop`). The URL is the journal's kind
(``replicator.journal.pgurl``: ``password_env``, ``schema``, timeouts,
several hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from keys.audit import AuditKey
from keys.keyring import deks, rotation
from keys.keyring import kek as keks
from keys.keyring.cache import KeyCache
from keys.keyring.state import KeyringState, Wrapped
from keys.provider import (
    DataKey,
    KekSource,
    KeyDestroyed,
    KeyringCorrupt,
    KeyringLocked,
    KeyStoreUnavailable,
    Tombstone,
    UnknownKey,
)
from keys.tags import Tagger
from replicator.journal.pgpool import PgPool
from replicator.journal.pgurl import Target, parse_url
from replicator.journal.together import Together
from replicator.keystore.loop import LoopThread
from replicator.keystore.records import (
    database,
    destroy_dek,
    load_or_create,
    make_pair,
    read_many,
    read_state,
    refuse_if_erased,
    ring_of,
    save_ring,
    with_deks,
)

T = TypeVar("T")


class PgKeyStore:
    """A ``KeyProvider`` on PostgreSQL. Open with ``PgKeyStore.open(url, kek)``."""

    def __init__(self, target: Target, loop: LoopThread, db: PgPool, ring: KeyringState, kek: bytes, by: int):
        # Use open(); this wires up an unlocked store (``kek`` is the current KEK of ``ring``).
        self.target = target
        self._where = f"{target.shown} (schema {target.schema})"
        self._loop = loop
        self._wait = target.connect_timeout + target.command_timeout
        self._db: PgPool | None = db
        self._together: weakref.WeakKeyDictionary[Any, Together[Any, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._ring = ring
        self._kek: bytes | None = kek
        self._previous: tuple[int, bytes] | None = None  # the KEK a rotation replaced, while linked
        self._unlocked_by = by
        self._cache = KeyCache()
        self._names = KeyCache()  # name keys by DEK id, forgotten with their DEK
        index = keks.unwrap(kek, ring.kek_current, ring.index_key, keks.INDEX_KEY_AD, "index key", self._where)
        self._tagger = Tagger(index)
        self._audit_key = AuditKey.derive(index)

    def __repr__(self) -> str:
        return f"PgKeyStore({self._where!r}, kek_version={self._ring.kek_current}, keys=<redacted>)"

    # ----- opening ------------------------------------------------------------

    @classmethod
    def open(cls, url: str, kek: KekSource, *, create: bool = True) -> PgKeyStore:
        """Connect, migrate, and unlock the records with ``kek`` (making them, with a new index key,
        if there are none and ``create``). ``KeyStoreUnavailable`` if the database does not answer."""
        target = parse_url(url)
        where = f"{target.shown} (schema {target.schema})"
        loop = LoopThread("replicator-keystore")
        db = database(target)
        try:
            ring = loop.run(
                db.run("open", lambda c: load_or_create(c, kek if create else None, where), tx=True),
                target.connect_timeout * max(1, len(target.hosts)) + target.command_timeout,
            )
            kek_bytes, by = rotation.unlock(where, ring, kek)
            return cls(target, loop, db, ring, kek_bytes, by)
        except BaseException as e:
            with contextlib.suppress(Exception):
                loop.run(db.close(), target.connect_timeout)
            loop.close()
            if isinstance(e, TimeoutError):
                raise KeyStoreUnavailable(f"key store {where} did not answer in time") from None
            raise

    @property
    def unlocked_by(self) -> int:
        """The KEK version the secret given to ``open`` unlocks (the previous one through a link)."""
        return self._unlocked_by

    @property
    def unfinished_rotation(self) -> tuple[int, int] | None:
        link = self._ring.link
        return None if link is None else (link.old, link.new)

    def close(self) -> None:
        """Forget the KEK and every cached key, and disconnect; later calls raise ``KeyringLocked``."""
        with self._lock:
            self._kek = self._previous = None
            self._cache.clear()
            self._names.clear()
            db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                self._loop.run(db.close(), self.target.connect_timeout + 1)
        self._loop.close()

    def __enter__(self) -> PgKeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- KeyProvider --------------------------------------------------------

    def tagger(self) -> Tagger:
        return self._tagger

    def audit_key(self) -> AuditKey:
        return self._audit_key

    def get_or_create_dek(self, customer: str) -> DataKey:
        ctag = self._tagger.customer_tag(customer)
        found = self._current_pair(self._call("read keys", lambda c: read_many(c, "customer", [ctag]))[0])
        if found is not None:
            return found
        return self._made(self._call("make a customer's key", lambda c: self._create(c, ctag), tx=True))

    async def get_or_create_dek_async(self, customer: str) -> DataKey:
        """``get_or_create_dek`` awaited from another event loop (``AsyncKeyReads``)."""
        ctag = self._tagger.customer_tag(customer)
        found = self._current_pair(await self._batched("customer", ctag))
        if found is not None:
            return found
        return self._made(await self._acall("make a customer's key", lambda c: self._create(c, ctag), tx=True))

    def _current_pair(self, row: Any) -> DataKey | None:
        """The customer's current keys in ``row`` (``read_many``'s), None if they are still to make."""
        if row is None:
            return None
        refuse_if_erased(row)
        return self._open_pair(row) if row["dek_id"] is not None and row["name_key"] is not None else None

    def _made(self, made: DataKey | Any) -> DataKey:
        return made if isinstance(made, DataKey) else self._open_pair(made)

    async def _create(self, conn: asyncpg.Connection, ctag: str) -> DataKey | Any:
        """A new DEK and name key for ``ctag`` (``make_pair``), or the row of the pair another node made first."""
        made = await make_pair(conn, ctag, self._follow, self._where)
        if isinstance(made, DataKey):
            self._remember(made.dek_id, made.key, made.name_key)
        return made

    def _open_pair(self, row: Any) -> DataKey:
        dek_id, version = row["dek_id"], row["kek"]
        return DataKey(
            dek_id,
            self._open_dek(dek_id, version, row["wrapped"]),
            self._open_name_key(dek_id, version, row["name_key"]),
        )

    def get_dek(self, dek_id: str) -> bytes:
        deks.check_id(dek_id)
        row = self._call(
            "read a key",
            lambda c: c.fetchrow("SELECT kek, wrapped, destroyed_at FROM key_deks WHERE dek_id = $1", dek_id),
        )
        if row is None:
            raise UnknownKey(f"no data key {dek_id} in key store {self._where}")
        if row["destroyed_at"] is not None:
            self._forget(dek_id)
            raise KeyDestroyed(
                f"data key {dek_id} was destroyed at {row['destroyed_at'].isoformat()}", row["destroyed_at"]
            )
        return self._open_dek(dek_id, row["kek"], row["wrapped"])

    def get_name_key(self, dek_id: str) -> bytes:
        deks.check_id(dek_id)
        row = self._call(
            "read a name key",
            lambda c: c.fetchrow("SELECT kek, name_key, destroyed_at FROM key_deks WHERE dek_id = $1", dek_id),
        )
        if row is not None and row["destroyed_at"] is not None:
            self._forget(dek_id)
            raise KeyDestroyed(
                f"data key {dek_id} was destroyed at {row['destroyed_at'].isoformat()}", row["destroyed_at"]
            )
        if row is None or row["name_key"] is None:
            raise UnknownKey(f"no name key of {dek_id} in key store {self._where}")
        return self._open_name_key(dek_id, row["kek"], row["name_key"])

    def name_key_at_hand(self, dek_id: str) -> bytes | None:
        return None  # only the database can say the key is still alive

    def dek_at_hand(self, customer: str) -> DataKey | None:
        return None  # only the database can say the key is still alive

    def key_at_hand(self, dek_id: str) -> bytes | None:
        return None

    def destroyed_at_hand(self, customer: str) -> tuple[datetime | None] | None:
        return None  # only the database can say the customer is not erased

    def destroy(self, customer: str) -> datetime:
        ctag = self._tagger.customer_tag(customer)
        return self._call("destroy a key", lambda c: self._erase(c, ctag, None), tx=True)[0]

    async def _erase(self, conn: asyncpg.Connection, ctag: str, tomb: Tombstone | None) -> tuple[datetime, bool]:
        """Tombstone ``ctag`` (as of ``tomb``, else now), destroying its current DEK:
        (its erasure time, whether this call erased it)."""
        await conn.execute("INSERT INTO key_customers (customer_tag) VALUES ($1) ON CONFLICT DO NOTHING", ctag)
        row = await conn.fetchrow(
            "SELECT dek_id, erased_at FROM key_customers WHERE customer_tag = $1 FOR UPDATE", ctag
        )
        if row["erased_at"] is not None:
            return row["erased_at"], False
        when = tomb.destroyed_at if tomb is not None else keks.now()
        dek_id = row["dek_id"]
        if dek_id is not None:
            self._forget(dek_id)
            await destroy_dek(conn, dek_id, when)
        await conn.execute(
            "UPDATE key_customers SET dek_id = NULL, erased_at = $2, erased_dek = $3 WHERE customer_tag = $1",
            ctag,
            when,
            dek_id,
        )
        return when, True

    def destroyed_at(self, customer: str) -> datetime | None:
        tomb = self.tombstone(self._tagger.customer_tag(customer))
        return None if tomb is None else tomb.destroyed_at

    def keys_for_read(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]:
        deks.check_id(dek_id)
        ctag = self._tagger.customer_tag(customer)
        return self._read_keys(dek_id, self._call("read keys", lambda c: read_many(c, "read", [(dek_id, ctag)]))[0])

    async def keys_for_read_async(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]:
        """``keys_for_read`` awaited from another event loop (``AsyncKeyReads``)."""
        deks.check_id(dek_id)
        return self._read_keys(dek_id, await self._batched("read", (dek_id, self._tagger.customer_tag(customer))))

    def _read_keys(self, dek_id: str, row: Any) -> tuple[bytes, bytes | None]:
        """``keys_for_read``'s answer from its ``records.read_many`` row."""
        refuse_if_erased(row)  # an erased customer first, as the keyring file answers
        if row["destroyed_at"] is not None:
            self._forget(dek_id)
            raise KeyDestroyed(
                f"data key {dek_id} was destroyed at {row['destroyed_at'].isoformat()}", row["destroyed_at"]
            )
        if row["kek"] is None:
            raise UnknownKey(f"no data key {dek_id} in key store {self._where}")
        key = self._open_dek(dek_id, row["kek"], row["wrapped"])
        name_key = row["name_key"]
        return key, self._open_name_key(dek_id, row["kek"], name_key) if name_key is not None else None

    def is_destroyed(self, dek_id: str) -> bool:
        return bool(
            self._call(
                "read a key",
                lambda c: c.fetchval("SELECT destroyed_at IS NOT NULL FROM key_deks WHERE dek_id = $1", dek_id),
            )
        )

    def tombstone(self, customer_tag: str) -> Tombstone | None:
        row = self._call(
            "read a tombstone",
            lambda c: c.fetchrow(
                "SELECT erased_at, erased_dek FROM key_customers WHERE customer_tag = $1", customer_tag
            ),
        )
        if row is None or row["erased_at"] is None:
            return None
        return Tombstone(row["erased_at"], row["erased_dek"])

    def reapply(self, customer_tag: str, tombstone: Tombstone, *, still_erased: bool) -> bool:
        async def apply(conn: asyncpg.Connection) -> bool:
            changed = False
            dek_id = tombstone.dek_id
            if dek_id is not None:
                self._forget(dek_id)
                changed = await destroy_dek(conn, dek_id, tombstone.destroyed_at)
                await conn.execute("UPDATE key_customers SET dek_id = NULL WHERE dek_id = $1", dek_id)
            if still_erased:
                changed = (await self._erase(conn, customer_tag, tombstone))[1] or changed
            return changed

        return self._call("re-apply an erasure", apply, tx=True)

    def reinstate(self, customer: str) -> None:
        ctag = self._tagger.customer_tag(customer)
        self._call(
            "reinstate",
            lambda c: c.execute(
                "UPDATE key_customers SET erased_at = NULL, erased_dek = NULL WHERE customer_tag = $1", ctag
            ),
        )

    def rotate_kek(self, new_kek: KekSource) -> int:
        async def rotate(conn: asyncpg.Connection) -> int:
            ring = await ring_of(conn, "FOR UPDATE")
            rotation.refuse_if_unfinished(ring, self._where)
            old = self._follow(ring)
            full = await with_deks(conn, ring)
            entry, new = keks.new_version(new_kek, ring.kek_current + 1)
            rotated = rotation.rotated(full, old, entry, new, self._where)
            await conn.executemany(
                "UPDATE key_deks SET kek = $2, wrapped = $3, name_key = $4 WHERE dek_id = $1",
                [(d, w.kek, w.wrapped, w.name_key) for d, w in rotated.deks.items()],
            )
            await save_ring(conn, rotated)
            self._adopt(rotated, new)
            return rotated.kek_current

        return self._call("rotate the KEK", rotate, tx=True)

    def finish_rotation(self) -> int | None:
        async def finish(conn: asyncpg.Connection) -> int | None:
            ring = await ring_of(conn, "FOR UPDATE")
            kek = self._follow(ring)
            link = ring.link
            if link is None:
                return None
            finished = rotation.finished(await with_deks(conn, ring))
            await save_ring(conn, finished)
            self._adopt(finished, kek)
            return link.old

        return self._call("finish the rotation", finish, tx=True)

    def state(self) -> KeyringState:
        """Every record as the keyring file would hold it (wrapped keys stay wrapped): for the
        ``keys rotate`` command's before-and-after inventory."""
        return self._call("read the records", read_state)

    def check(self) -> None:
        async def look(conn: asyncpg.Connection) -> None:
            ring = await ring_of(conn, "")
            kek = self._follow(ring)
            if not keks.checks(kek, ring.kek_current, ring.current_version):
                raise KeyringCorrupt(f"key store {self._where} failed its KEK check")

        self._call("check", look)

    # ----- internals ----------------------------------------------------------

    def _call(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, tx: bool = False) -> T:
        """``fn`` on a pooled connection (in a transaction if ``tx``); database failures as
        ``KeyStoreUnavailable`` or ``KeyringError`` naming the store, never a secret."""
        try:
            return self._loop.run(self._on_pool(what, fn, tx), self._wait)
        except TimeoutError:
            raise self._no_answer(what) from None

    async def _acall(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, tx: bool = False) -> T:
        """``_call`` awaited from another event loop."""
        try:
            return await self._loop.arun(self._on_pool(what, fn, tx), self._wait)
        except TimeoutError:
            raise self._no_answer(what) from None

    async def _batched(self, kind: str, item: Any) -> Any:
        """A read of ``records.read_many`` awaited from the caller's loop; concurrent ones go out
        together (``Together``): one query for all of a loop's reads waiting, each begun after its
        caller asked, so an erasure that returned is seen by every read that followed it."""
        loop = asyncio.get_running_loop()
        if (together := self._together.get(loop)) is None:
            together = self._together[loop] = Together(
                ("customer", "read"),
                lambda k, items: self._acall("read keys", lambda c: read_many(c, k, items)),
            )
        return await together(kind, item)

    def _on_pool(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]], tx: bool) -> Coroutine[Any, Any, T]:
        if self._db is None or self._kek is None:
            raise KeyringLocked(f"key store {self._where} is closed")
        return self._db.run(what, fn, tx=tx)

    def _no_answer(self, what: str) -> KeyStoreUnavailable:
        return KeyStoreUnavailable(f"key store {self._where} is unavailable ({what}): no answer in time")

    def _follow(self, ring: KeyringState) -> bytes:
        """The KEK of ``ring`` (read just now), following a rotation made by another node."""
        with self._lock:
            if self._kek is None:
                raise KeyringLocked(f"key store {self._where} is closed")
            if ring.kek_current == self._ring.kek_current and ring.link == self._ring.link:
                return self._kek
            kek = rotation.follow(ring, self._kek, self._ring.kek_current)
            if kek is None:
                raise KeyringLocked(
                    f"key store {self._where} was re-keyed since this node opened it; restart it with the current KEK"
                )
            self._set(ring, kek)
            return kek

    def _adopt(self, ring: KeyringState, kek: bytes) -> None:
        with self._lock:
            self._set(ring, kek)

    def _set(self, ring: KeyringState, kek: bytes) -> None:
        # A row read just before a rotation committed is still under the previous KEK: keep it while linked.
        if self._kek is not None and ring.kek_current != self._ring.kek_current:
            self._previous = (self._ring.kek_current, self._kek)
        if ring.link is None:
            self._previous = None
        self._ring, self._kek = ring, kek

    def _kek_of(self, version: int) -> bytes:
        for attempt in range(2):
            with self._lock:
                if self._kek is None:
                    raise KeyringLocked(f"key store {self._where} is closed")
                if version == self._ring.kek_current:
                    return self._kek
                if self._previous is not None and version == self._previous[0]:
                    return self._previous[1]
            if attempt == 0:  # rotated elsewhere since this node last looked
                self._follow(self._call("read the KEK versions", lambda c: ring_of(c, "")))
        raise KeyringCorrupt(f"a data key in key store {self._where} is wrapped by a KEK version it does not hold")

    def _open_dek(self, dek_id: str, version: int, wrapped: str) -> bytes:
        with self._lock:
            key = self._cache.get(dek_id)
            if key is not None:
                return key
        item = Wrapped(version, wrapped)
        key = keks.unwrap(self._kek_of(version), version, item, keks.dek_ad(dek_id), f"data key {dek_id}", self._where)
        with self._lock:
            self._cache.put(dek_id, key)
        return key

    def _open_name_key(self, dek_id: str, version: int, wrapped: str) -> bytes:
        with self._lock:
            key = self._names.get(dek_id)
            if key is not None:
                return key
        item = Wrapped(version, wrapped)
        what = f"name key of {dek_id}"
        key = keks.unwrap(self._kek_of(version), version, item, keks.name_key_ad(dek_id), what, self._where)
        with self._lock:
            self._names.put(dek_id, key)
        return key

    def _remember(self, dek_id: str, key: bytes, name_key: bytes) -> None:
        with self._lock:
            self._cache.put(dek_id, key)
            self._names.put(dek_id, name_key)

    def _forget(self, dek_id: str) -> None:
        with self._lock:
            self._cache.forget(dek_id)
            self._names.forget(dek_id)
