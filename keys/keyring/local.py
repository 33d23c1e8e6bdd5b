"""The local keyring: the embedded ``KeyProvider``, one JSON file.

Theory of operation
-------------------
The file (``keys.keyring.state`` is its content, ``codec`` its encoding)
holds the KEK versions, the index key of the name tags, each customer's
wrapped DEKs and the destruction records, all sealed under the current KEK
(``keys.keyring.kek``). Customers appear by **customer tag**, not by id: the
tag already names the customer's objects in both clouds, so the file adds no
new identifier, and a copy of the file without the KEK does not list who the
customers are.

A handle keeps the state it last read and the KEK in memory. Threads of one
process serialise on a lock; processes sharing the file serialise mutations
on the state file's lock and re-read the file before changing it, so no
process overwrites a key another one created (``statefile``). Every call
stats the file and reloads it if another process replaced it, so a destroy
elsewhere takes effect here at the next call, and a rotation elsewhere is
followed through its link (``rotation``).

Erasure (``destroy``) removes the wrapped DEK, and the name key in its
record, from the file and writes a tombstone (``deks``); unwrapped keys live only in an in-memory LRU (bounded,
``DEFAULT_CACHE_SIZE``) that drops the key at once. Limits worth knowing:
Python cannot wipe ``bytes`` from memory, and an old *backup of this file*
still holds the wrapped DEK. Restored, such a backup is undone by the erasure
ledger the service keeps in both regions (``reapply``, run at every start);
a stolen copy is not: to put it out of reach too, rotate the KEK
(``rotate_kek``), finish the rotation (``finish_rotation``) and discard the
old passphrase or key file.

The calls are synchronous (see ``keys.provider``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Self, TypeVar

from keys._audit_format import AuditKey
from keys.keyring import deks, rotation, statefile
from keys.keyring import kek as keks
from keys.keyring.cache import DEFAULT_CACHE_SIZE, KeyCache
from keys.keyring.state import KeyringState, Wrapped, WrappedDek
from keys.provider import (
    KEY_BYTES,
    DataKey,
    KekSource,
    KeyDestroyed,
    KeyringCorrupt,
    KeyringError,
    KeyringLocked,
    Tombstone,
    UnknownKey,
)
from keys.tags import Tagger

_T = TypeVar("_T")


class KeyringExists(KeyringError):
    """``create`` found a keyring file already there."""


class LocalKeyring:
    """A ``KeyProvider`` backed by one local JSON file.

    Open with ``LocalKeyring.create(path, kek)`` (new file) or
    ``LocalKeyring.open(path, kek, create=False)``; ``kek`` is a
    ``Passphrase``, a ``KeyFile`` or a ``ServiceKek`` (``BarbicanKek``). Raises
    ``WrongPassphrase`` for the wrong secret, ``KeyServiceError`` when the key
    service cannot be asked, ``KeyringCorrupt`` for an unreadable file and
    ``KeyringError`` for a file group or others can access."""

    def __init__(
        self, path: Path, state: KeyringState, kek: bytes, cache_size: int, unlocked_by: int | None = None
    ) -> None:
        # Use create()/open(); this only wires up an unlocked state (``kek`` is the current KEK).
        self._path = path
        self._lock = threading.RLock()
        self._file_lock = statefile.FileLock(path)
        self._state = state
        self._kek: bytes | None = kek
        self._version = state.kek_current
        self._unlocked_by = self._version if unlocked_by is None else unlocked_by
        self._cache = KeyCache(cache_size)
        self._names = KeyCache(cache_size)  # name keys by DEK id, dropped with their DEK
        self._sig = statefile.signature(path)
        index = self._unwrap(kek, state.index_key, keks.INDEX_KEY_AD, "index key")
        self._tagger = Tagger(index)
        self._audit_key = AuditKey.derive(index)

    def __repr__(self) -> str:
        return f"LocalKeyring(path={str(self._path)!r}, kek_version={self._version}, keys=<redacted>)"

    # ----- opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], kek: KekSource, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> LocalKeyring:
        """Make a new keyring file (fails if one exists) with a fresh index key."""
        path = Path(path)
        entry, kek_bytes = keks.new_version(kek, 1)
        state = KeyringState(
            kek_current=1,
            kek_versions={1: entry},
            index_key=Wrapped(1, keks.seal(kek_bytes, os.urandom(KEY_BYTES), keks.INDEX_KEY_AD)),
            deks={},
            customers={},
            destroyed={},
            erased={},
        )
        with statefile.FileLock(path).held():
            if path.exists():
                raise KeyringExists(f"keyring {path} already exists")
            statefile.write(path, state)
        return cls(path, state, kek_bytes, cache_size)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        kek: KekSource,
        *,
        create: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> LocalKeyring:
        """Unlock an existing keyring (or make one if ``create`` and it is missing)."""
        path = Path(path)
        if create and not path.exists():
            with contextlib.suppress(KeyringExists):
                return cls.create(path, kek, cache_size=cache_size)
            # Lost a race with another creator: fall through and open theirs.
        state = statefile.read(path)
        kek_bytes, unlocked_by = rotation.unlock(path, state, kek)
        return cls(path, state, kek_bytes, cache_size, unlocked_by)

    @property
    def unfinished_rotation(self) -> tuple[int, int] | None:
        """(previous, current) KEK versions while a rotation's link awaits ``finish_rotation``."""
        link = self._state.link
        return None if link is None else (link.old, link.new)

    @property
    def unlocked_by(self) -> int:
        """The KEK version the secret given to ``open`` unlocks: the current
        one, or the previous one through a rotation link not yet finished."""
        return self._unlocked_by

    def close(self) -> None:
        """Forget the KEK and every cached key; later calls raise ``KeyringLocked``."""
        with self._lock:
            self._kek = None
            self._cache.clear()
            self._names.clear()

    def __enter__(self) -> Self:
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
        with self._lock:
            kek = self._fresh()
            found = self._current(ctag, kek)
            if found is not None:
                return found
            with self._file_lock.held():
                kek = self._fresh()
                found = self._current(ctag, kek)  # another process may have made it
                if found is not None:
                    return found
                name_key = os.urandom(KEY_BYTES)
                dek_id = self._state.customers.get(ctag)
                if dek_id is not None:  # made before name keys: give it one, once
                    key = self._key(dek_id, kek)
                    self._commit(deks.named(self._state, dek_id, keks.seal(kek, name_key, keks.name_key_ad(dek_id))))
                else:
                    dek_id, key = deks.new_id(), os.urandom(KEY_BYTES)
                    item = WrappedDek(
                        self._version,
                        keks.seal(kek, key, keks.dek_ad(dek_id)),
                        keks.now(),
                        keks.seal(kek, name_key, keks.name_key_ad(dek_id)),
                    )
                    self._commit(deks.created(self._state, ctag, dek_id, item))
            self._cache.put(dek_id, key)
            self._names.put(dek_id, name_key)
            return DataKey(dek_id, key, name_key)

    def get_dek(self, dek_id: str) -> bytes:
        deks.check_id(dek_id)
        with self._lock:
            kek = self._fresh()
            return self._key(dek_id, kek)

    def get_name_key(self, dek_id: str) -> bytes:
        deks.check_id(dek_id)
        with self._lock:
            kek = self._fresh()
            return self._name_key(dek_id, kek)

    def name_key_at_hand(self, dek_id: str) -> bytes | None:
        deks.check_id(dek_id)
        return self._at_hand(lambda kek: self._name_key(dek_id, kek))

    def dek_at_hand(self, customer: str) -> DataKey | None:
        ctag = self._tagger.customer_tag(customer)
        return self._at_hand(lambda kek: self._current(ctag, kek))

    def key_at_hand(self, dek_id: str) -> bytes | None:
        deks.check_id(dek_id)
        return self._at_hand(lambda kek: self._key(dek_id, kek))

    def _at_hand(self, look: Callable[[bytes], _T | None]) -> _T | None:
        """``look(kek)`` if that needs no I/O but a ``stat``: the file is unchanged since it was
        read and no other thread holds the keyring. None when it would have to wait."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._kek is None:
                raise KeyringLocked(f"keyring {self._path} is closed")
            try:
                if statefile.signature(self._path) != self._sig:
                    return None  # reloading reads the file: the blocking call does it
            except OSError:
                return None  # the blocking call reports it
            return look(self._kek)
        finally:
            self._lock.release()

    def destroy(self, customer: str) -> datetime:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                tomb = self._state.erased.get(ctag)
                if tomb is not None:
                    return tomb.destroyed_at
                dek_id = self._state.customers.get(ctag)
                if dek_id is not None:
                    self._cache.forget(dek_id)  # drop the plaintext keys first
                    self._names.forget(dek_id)
                when = keks.now()
                self._commit(deks.destroyed(self._state, ctag, when))
            return when

    def tombstone(self, customer_tag: str) -> Tombstone | None:
        with self._lock:
            self._fresh()
            return self._state.erased.get(customer_tag)

    def reapply(self, customer_tag: str, tombstone: Tombstone, *, still_erased: bool) -> bool:
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                state = deks.reapplied(self._state, customer_tag, tombstone, still_erased)
                if state is None:
                    return False
                self._cache.keep_only(state.deks)
                self._names.keep_only(state.deks)
                self._commit(state)
            return True

    def destroyed_at(self, customer: str) -> datetime | None:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            tomb = self._state.erased.get(ctag)
            return None if tomb is None else tomb.destroyed_at

    def destroyed_at_hand(self, customer: str) -> tuple[datetime | None] | None:
        ctag = self._tagger.customer_tag(customer)

        def look(_kek: bytes) -> tuple[datetime | None]:
            tomb = self._state.erased.get(ctag)
            return (None if tomb is None else tomb.destroyed_at,)

        return self._at_hand(look)

    def keys_for_read(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]:
        deks.check_id(dek_id)
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            kek = self._fresh()
            tomb = self._state.erased.get(ctag)
            if tomb is not None:
                when = tomb.destroyed_at
                raise KeyDestroyed(f"this customer was erased at {when.isoformat()}", when)
            key = self._key(dek_id, kek)
            item = self._state.deks.get(dek_id)
            return key, self._name_key(dek_id, kek) if item is not None and item.name_key is not None else None

    def is_destroyed(self, dek_id: str) -> bool:
        with self._lock:
            self._fresh()
            return dek_id in self._state.destroyed

    def reinstate(self, customer: str) -> None:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                if ctag in self._state.erased:
                    self._commit(deks.reinstated(self._state, ctag))

    def rotate_kek(self, new_kek: KekSource) -> int:
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                old = self._fresh()
                rotation.refuse_if_unfinished(self._state, self._path)
                entry, new = keks.new_version(new_kek, self._version + 1)
                self._commit(rotation.rotated(self._state, old, entry, new, self._path))
                self._kek, self._version = new, self._state.kek_current
            return self._version

    def finish_rotation(self) -> int | None:
        """Remove the rotation link and the previous KEK version: from now on
        only the current KEK opens the file. Returns the version dropped, or
        None if there was no rotation to finish. A process still holding the
        previous KEK that has not read the file since the rotation is locked
        out (``KeyringLocked``) by this: call it once every process runs on
        the new KEK."""
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                link = self._state.link
                if link is None:
                    return None
                self._commit(rotation.finished(self._state))
            return link.old

    def check(self) -> None:
        with self._lock:
            kek = self._fresh()
            if not keks.checks(kek, self._version, self._state.current_version):
                raise KeyringCorrupt(f"keyring {self._path} failed its KEK check")
            self._unwrap(kek, self._state.index_key, keks.INDEX_KEY_AD, "index key")

    # ----- internals (call with self._lock held) ------------------------------

    def _fresh(self) -> bytes:
        """Reload the file if another process replaced it; return the KEK."""
        if self._kek is None:
            raise KeyringLocked(f"keyring {self._path} is closed")
        try:
            sig = statefile.signature(self._path)
        except OSError as exc:
            raise KeyringError(f"cannot read keyring {self._path}: {exc.strerror}") from None
        if sig != self._sig:
            state = statefile.read(self._path)
            kek = rotation.follow(state, self._kek, self._version)
            if kek is None:
                raise KeyringLocked(
                    f"keyring {self._path} was re-keyed since it was opened; reopen it with the current KEK"
                )
            self._state, self._kek, self._version, self._sig = state, kek, state.kek_current, sig
            self._cache.keep_only(state.deks)  # destroyed by another process
            self._names.keep_only(state.deks)
        return self._kek

    def _commit(self, state: KeyringState) -> None:
        statefile.write(self._path, state)
        self._state = state
        self._sig = statefile.signature(self._path)

    def _current(self, ctag: str, kek: bytes) -> DataKey | None:
        tomb = self._state.erased.get(ctag)
        if tomb is not None:
            raise KeyDestroyed(
                f"this customer was erased at {tomb.destroyed_at.isoformat()}; reinstate before writing again",
                tomb.destroyed_at,
            )
        dek_id = self._state.customers.get(ctag)
        item = None if dek_id is None else self._state.deks.get(dek_id)
        if dek_id is None or item is None or item.name_key is None:
            return None  # none yet, or made before name keys: the caller makes what is missing
        return DataKey(dek_id, self._key(dek_id, kek), self._name_key(dek_id, kek))

    def _key(self, dek_id: str, kek: bytes) -> bytes:
        return self._unwrapped(dek_id, kek, self._cache, f"data key {dek_id}", lambda item: item, keks.dek_ad(dek_id))

    def _name_key(self, dek_id: str, kek: bytes) -> bytes:
        def wrapped(item: WrappedDek) -> Wrapped | None:
            return None if item.name_key is None else Wrapped(item.kek, item.name_key)

        return self._unwrapped(dek_id, kek, self._names, f"name key of {dek_id}", wrapped, keks.name_key_ad(dek_id))

    def _unwrapped(
        self,
        dek_id: str,
        kek: bytes,
        cache: KeyCache,
        what: str,
        wrapped: Callable[[WrappedDek], Wrapped | WrappedDek | None],
        ad: bytes,
    ) -> bytes:
        """One of ``dek_id``'s keys (the DEK, or its name key: ``what``), from ``cache`` or unwrapped
        from ``wrapped(its record)`` into it."""
        key = cache.get(dek_id)
        if key is not None:
            return key
        when = self._state.destroyed.get(dek_id)
        if when is not None:
            raise KeyDestroyed(f"data key {dek_id} was destroyed at {when.isoformat()}", when)
        item = self._state.deks.get(dek_id)
        sealed = wrapped(item) if item is not None else None
        if sealed is None:
            raise UnknownKey(f"no {what} in keyring {self._path}")
        key = self._unwrap(kek, sealed, ad, what)
        cache.put(dek_id, key)
        return key

    def _unwrap(self, kek: bytes, item: Wrapped | WrappedDek, ad: bytes, what: str) -> bytes:
        # self._version is the version of ``kek``: every wrapped key uses it.
        return keks.unwrap(kek, self._version, item, ad, what, self._path)
