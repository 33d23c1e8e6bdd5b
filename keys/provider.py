"""The key-provider contract: who holds data keys and what each call guarantees.

A key provider owns three kinds of secret:

* one **data key (DEK)** per customer: 32 random bytes (AES-256), named by an
  opaque ASCII id (``dek_<base32>``) that travels in every object header;
* one **name key** per DEK generation: 32 random bytes, made with the DEK and
  wrapped beside it, that seals the customer's real object names
  (``keys.tags``). It is not derived from the DEK, so opening names (a
  listing under a ``meta:`` scope) never touches a content key;
* the **key-encryption key (KEK)** that wraps every DEK and name key at rest;
* the deployment **index key** that keys the name tags (``keys.tags``);
* the deployment **audit key** that keys each node's audit chain
  (``keys.audit``), derived from the index key (``AuditKey.derive``): it is
  kept wrapped under the KEK as the index key is, never written in clear.

Guarantees every provider gives:

* ``get_or_create_dek(customer)`` returns the customer's current DEK, making
  one on the first write. It never makes a new key for an *erased* customer:
  it raises ``KeyDestroyed`` until an operator calls ``reinstate(customer)``,
  after which the next call makes a **new generation** (a new id); the old
  id stays destroyed for ever, so old objects stay unreadable. The returned
  ``DataKey`` carries the generation's name key (a DEK made before name keys
  gets one on this call, once).
* ``get_name_key(dek_id)`` returns the name key of that generation without
  unwrapping its DEK, and raises exactly as ``get_dek`` does: the name key is
  destroyed, reapplied, reinstated and rewrapped together with its DEK.
* ``get_dek(dek_id)`` returns the key for an id found in an object header, or
  raises ``KeyDestroyed`` (the id was erased) or ``UnknownKey`` (never seen).
* ``destroy(customer)`` crypto-shreds: once it returns, no caller of this
  provider can obtain that customer's DEK again, cached copies included. It
  is idempotent and returns the time of the first destruction.
* ``rotate_kek(new)`` rewraps every DEK, name key (and the index key) under a new KEK
  in one atomic step; objects are never re-encrypted. Holders of the
  previous KEK (running processes) keep being served until
  ``finish_rotation()``, after which the previous KEK opens nothing.
* ``tombstone`` and ``reapply`` let the erasure ledger (kept in both
  regions) be compared with the provider and re-applied, so a restored backup
  of the key records never brings an erased customer's key back.
* Keys never appear in ``repr``, logs or exception messages. Messages name
  key ids and times, never customers, keys or passphrases.

The methods are synchronous: the local keyring does small local file I/O.
A method that writes (first DEK of a customer, destroy, rotate) blocks on
fsync for a few milliseconds; async callers should run it with
``asyncio.to_thread``. Cache hits are pure memory: ``dek_at_hand`` and
``key_at_hand`` answer those without waiting (None when the answer needs
I/O or another thread holds the provider), so an async caller tries them
first and pays a thread hop only on a miss.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from keys._audit_format import AuditKey
from keys.tags import Tagger

KEY_BYTES = 32


# ----- errors -----------------------------------------------------------------


class KeyringError(Exception):
    """Base of every key-provider error. Messages never hold secrets."""


class KeyringLocked(KeyringError):
    """The keyring cannot be unlocked with what was given (wrong kind of KEK,
    or re-keyed by another process since it was opened)."""


class WrongPassphrase(KeyringLocked):
    """The passphrase or key file does not unlock this keyring."""


class KeyringCorrupt(KeyringError):
    """The keyring file is not a keyring this code can read."""


class KeyServiceError(KeyringError):
    """The key service that holds the KEK could not be reached or refused the request. The message
    names the secret's reference and what failed (an HTTP status, a kind of connection error),
    never the key or the credentials."""

    def __init__(self, ref: str, reason: str, status: int | None = None, *, service: str = "key service") -> None:
        super().__init__(f"{service} secret {ref}: {reason}")
        self.ref = ref
        self.reason = reason  # what failed, without the reference
        self.status = status  # the key service's HTTP status, None when it did not answer


class KeyDestroyed(KeyringError):
    """The data key was destroyed (crypto-shredded); its data is gone for good."""

    def __init__(self, message: str, destroyed_at: datetime) -> None:
        super().__init__(message)
        self.destroyed_at = destroyed_at


class UnknownKey(KeyringError):
    """No key with this id was ever held by this provider."""


class KeyStoreUnavailable(KeyringError):
    """The key records cannot be reached (a shared key store's database is away). Callers fail
    closed: no key, hence no decrypt, until the store answers again."""


# ----- values -----------------------------------------------------------------


class DataKey:
    """A customer's data key: ``dek_id``, the 32 ``key`` bytes, and the 32-byte ``name_key`` of the
    same generation (which seals object names, ``keys.tags``).

    Unpacks like a pair (``dek_id, key = provider.get_or_create_dek(c)``);
    its ``repr`` never shows a key.
    """

    __slots__ = ("dek_id", "key", "name_key")

    def __init__(self, dek_id: str, key: bytes, name_key: bytes) -> None:
        self.dek_id = dek_id
        self.key = key
        self.name_key = name_key

    def __iter__(self) -> Iterator[str | bytes]:
        return iter((self.dek_id, self.key))

    def __repr__(self) -> str:
        return f"DataKey(dek_id={self.dek_id!r}, key=<redacted>)"


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost for passphrase KEKs. The default is OWASP's minimum
    (N=2**17, r=8, p=1: 128 MiB of memory, paid once when the keyring opens).
    ``fast()`` is for tests only."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    @classmethod
    def fast(cls) -> ScryptParams:
        return cls(n=2**4, r=8, p=1)

    def check(self) -> None:
        # Bounds also stop a corrupted file from asking for gigabytes.
        if self.n < 2 or self.n & (self.n - 1) or self.n > 2**20:
            raise ValueError("scrypt n must be a power of two in [2, 2**20]")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise ValueError("scrypt r must be in [1, 32] and p in [1, 16]")


MIN_PASSPHRASE_CHARS = 12


@dataclass(frozen=True)
class Passphrase:
    """A KEK derived from a passphrase with scrypt (salt and cost kept in the
    keyring file; ``params`` is used only when a new KEK version is made).

    At least 12 characters: a stolen keyring file can be attacked offline, so
    a short passphrase would expose every customer."""

    secret: str = field(repr=False)
    params: ScryptParams = ScryptParams()

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str) or len(self.secret) < MIN_PASSPHRASE_CHARS:
            raise ValueError(f"passphrase must be a string of at least {MIN_PASSPHRASE_CHARS} characters")
        self.params.check()

    def __repr__(self) -> str:
        return f"Passphrase(<redacted>, params={self.params!r})"


@dataclass(frozen=True)
class KeyFile:
    """A KEK read from a file holding exactly 32 raw random bytes
    (make one with ``KeyFile.generate(path)``)."""

    path: Path

    def read(self) -> bytes:
        try:
            data = Path(self.path).read_bytes()
        except OSError as exc:
            raise KeyringLocked(f"cannot read key file {self.path}: {exc.strerror}") from None
        if len(data) != KEY_BYTES:
            raise KeyringLocked(f"key file {self.path} must hold exactly {KEY_BYTES} bytes")
        return data

    @classmethod
    def generate(cls, path: str | os.PathLike[str]) -> KeyFile:
        """Write 32 random bytes to a new file (mode 0600; fails if it exists)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls(Path(path))


class ServiceKek(ABC):
    """A KEK held by a key service (OpenStack Barbican: ``keys.barbican.BarbicanKek``), fetched into
    memory when a keyring is opened or rotated to it, never written anywhere.

    The keyring records ``kind`` and ``ref`` (where the secret lives: its public name, no secret),
    so a wrong secret is named in the error. ``probe`` is the cheap health check of a running
    process, which holds the KEK already: the service answers for the secret (metadata only)."""

    kind: ClassVar[str]  # a key-service kind the keyring knows ("barbican")

    @property
    @abstractmethod
    def ref(self) -> str:
        """The secret's reference at the service (a URL)."""

    @abstractmethod
    def fetch(self) -> bytes:
        """The 32-byte KEK. Raises ``KeyServiceError``, or ``KeyringLocked`` if the secret is not a
        32-byte key."""

    @abstractmethod
    def probe(self, timeout: float | None = None) -> None:
        """Whether the service answers for the secret now, without fetching the key; raises
        ``KeyServiceError``."""


KekSource = Passphrase | KeyFile | ServiceKek


@dataclass(frozen=True)
class Tombstone:
    """An erased customer: when, and the DEK id destroyed then (None if they never had a key)."""

    destroyed_at: datetime
    dek_id: str | None


# ----- the contract -----------------------------------------------------------


@runtime_checkable
class KeyProvider(Protocol):
    """Holds DEKs, the KEK and the index key. See the module docstring for
    the guarantees; each method names what it raises."""

    def get_or_create_dek(self, customer: str) -> DataKey:
        """The customer's current DEK, created (and durably stored) on first
        use. Raises ``KeyDestroyed`` if the customer was erased and not
        reinstated."""
        ...

    def get_dek(self, dek_id: str) -> bytes:
        """The key for ``dek_id``. Raises ``KeyDestroyed`` or ``UnknownKey``."""
        ...

    def get_name_key(self, dek_id: str) -> bytes:
        """The name key of the generation ``dek_id``, never touching its DEK. Raises as ``get_dek``
        (``UnknownKey`` too for a DEK made before name keys that has not written since: no name
        was ever sealed under a name key of it)."""
        ...

    def name_key_at_hand(self, dek_id: str) -> bytes | None:
        """``get_name_key(dek_id)`` if it needs no waiting, else None. Raises as ``get_name_key``."""
        ...

    def dek_at_hand(self, customer: str) -> DataKey | None:
        """``get_or_create_dek(customer)`` if it needs no waiting (no I/O beyond a ``stat``, no
        lock held elsewhere), else None. Raises as ``get_or_create_dek``."""
        ...

    def key_at_hand(self, dek_id: str) -> bytes | None:
        """``get_dek(dek_id)`` if it needs no waiting, else None. Raises as ``get_dek``."""
        ...

    def destroy(self, customer: str) -> datetime:
        """Crypto-shred the customer's DEK and its name key (and refuse new ones until
        ``reinstate``). Idempotent; returns the first destruction time (UTC).
        Works for a customer who never had a key too: the tombstone still
        blocks later writes under an erased account."""
        ...

    def destroyed_at(self, customer: str) -> datetime | None:
        """When the customer was erased, or None if they are not erased."""
        ...

    def keys_for_read(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]:
        """What a read of ``customer``'s object under ``dek_id`` needs, in one answer (a shared key
        store asks its database once): the DEK and its name key (None for a generation made
        before name keys). Raises ``KeyDestroyed`` if the customer is erased or the key
        destroyed, ``UnknownKey`` if there is no such key."""
        ...

    def destroyed_at_hand(self, customer: str) -> tuple[datetime | None] | None:
        """``(destroyed_at(customer),)`` if it needs no waiting, else None (the caller asks
        ``destroyed_at`` in a thread). A shared key store always answers None: only it can tell."""
        ...

    def is_destroyed(self, dek_id: str) -> bool:
        """Whether ``dek_id`` was destroyed (an unknown id is not destroyed)."""
        ...

    def tombstone(self, customer_tag: str) -> Tombstone | None:
        """The erasure of the customer tagged ``customer_tag``, or None if they are not erased."""
        ...

    def reapply(self, customer_tag: str, tombstone: Tombstone, *, still_erased: bool) -> bool:
        """Re-apply an erasure the ledger recorded (it knows tags, not customer ids): its DEK
        stays destroyed, and if ``still_erased`` (not reinstated since) the customer is erased.
        True if something had to change, i.e. a restored backup had brought a key back."""
        ...

    def reinstate(self, customer: str) -> None:
        """Lift an erasure tombstone so the customer's next write makes a new
        DEK generation. Old DEK ids stay destroyed; nothing is recovered."""
        ...

    def rotate_kek(self, new_kek: KekSource) -> int:
        """Rewrap every DEK, name key and the index key under ``new_kek`` atomically;
        returns the new KEK version. Objects are not touched. Until
        ``finish_rotation``, the previous KEK still unlocks the keys, so
        processes running with it carry on; a second rotation before that
        is refused."""
        ...

    def finish_rotation(self) -> int | None:
        """Stop the previous KEK from unlocking anything; returns its version,
        or None if no rotation was waiting to be finished."""
        ...

    def tagger(self) -> Tagger:
        """The name-tag function keyed by this deployment's index key."""
        ...

    def audit_key(self) -> AuditKey:
        """The key of every node's audit chain: the same on every handle on these records, unchanged
        by a KEK rotation (it comes from the index key, which a rotation rewraps)."""
        ...

    def check(self) -> None:
        """Health probe: raises ``KeyringError`` if keys cannot be served."""
        ...


@runtime_checkable
class AsyncKeyReads(Protocol):
    """What a provider whose keys are across a network may offer a caller on an event loop: the
    two calls every write and read makes, awaited, answering and raising exactly as the
    synchronous ones. A provider without them is called in a worker thread."""

    async def get_or_create_dek_async(self, customer: str) -> DataKey: ...

    async def keys_for_read_async(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]: ...


class KeyReadsInThread:
    """``AsyncKeyReads`` for a provider without them: its synchronous calls, in a worker thread."""

    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    async def get_or_create_dek_async(self, customer: str) -> DataKey:
        return await asyncio.to_thread(self._keys.get_or_create_dek, customer)

    async def keys_for_read_async(self, customer: str, dek_id: str) -> tuple[bytes, bytes | None]:
        return await asyncio.to_thread(self._keys.keys_for_read, customer, dek_id)


def awaited_key_reads(keys: KeyProvider) -> AsyncKeyReads:
    """The two hot calls of ``keys`` for a caller on an event loop: its own, or in a worker thread."""
    return keys if isinstance(keys, AsyncKeyReads) else KeyReadsInThread(keys)
