"""What every path through the service shares: its dependencies and the checks each call makes first.

The paths (:mod:`.lookup`, :mod:`.write`, :mod:`.read`, :mod:`.delete`,
:mod:`.listing`, :mod:`.export`, :mod:`.erasure`) each add their calls to
this base; :class:`~replicator.paths.service.Service` gathers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from keys import AuditLog, AuditUnavailable, DataClass, KeyDestroyed, Policy, Principal
from keys.provider import DataKey, KeyProvider, KeyringError, UnknownKey, awaited_key_reads
from keys.ranges import plaintext_size as _exact_plaintext_size
from keys.receipts import SigningKey
from keys.sin_containers import ScanLimits
from keys.stream import DecryptionFailed
from keys.tags import NAME_KEY_SEAL, open_name, sealed_version
from regions import Region
from replicator import errors
from replicator.hlc import Clock, Version
from replicator.journal import Journal, JournalError, Kind
from replicator.observe.metrics import Metrics
from replicator.paths.straggler import cancelled_on_exit, outcome, with_grace
from replicator.replication.locks import Hold, Locks, NameLocks
from replicator.retention import Kept, Written, expired, keep_of, no_longer_kept, retention_of

MiB = 1 << 20
log = logging.getLogger("replicator.paths")


class PathsBase:
    def __init__(
        self,
        *,
        policy: Policy,
        keys: KeyProvider,
        regions: dict[str, Region],
        journal: Journal,
        audit: AuditLog,
        metrics: Metrics,
        clock: Clock,
        read_preference: str,
        locks: Locks | None = None,
        max_object_bytes: int = 5 << 30,
        small_body: int = 4 * MiB,
        now_ms: Callable[[], int] | None = None,
        on_journal: Callable[[], None] = lambda: None,
        straggler_grace: float = 2.0,
        no_progress_timeout: float = 15.0,
        receipt_key: SigningKey | None = None,
        scan_limits: ScanLimits | None = None,
    ):
        self.policy = policy
        self.keys = keys
        self._key_reads = awaited_key_reads(keys)  # a key store's own; else the keyring's, in a thread
        self.tagger = keys.tagger()
        self.regions = regions
        self.journal = journal
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.order = [read_preference] + [r for r in regions if r != read_preference]
        self.locks: Locks = locks or NameLocks()
        self.max_object_bytes = max_object_bytes
        self.small_body = small_body
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.on_journal = on_journal  # wakes the replication workers
        self.straggler_grace = straggler_grace
        self.no_progress_timeout = no_progress_timeout  # a streamed put moving no bytes this long is degraded
        self.scan_limits = scan_limits or ScanLimits()  # bomb guards of the SIN check inside containers
        self.retention = retention_of(policy)
        self.keep = keep_of(policy)
        self.receipt_key = receipt_key  # signs erasure receipts (keys.receipts); None: unsigned

    # -- checks shared by every path ------------------------------------------------

    def _class(self, data_class: str) -> DataClass:
        dc = self.policy.data_class(data_class)
        if dc is None:
            raise errors.BadRequest(
                f"unknown data class {data_class!r} (one of {', '.join(sorted(self.policy.classes))})"
            )
        return dc

    def authorize(
        self,
        principal: Principal | None,
        action: str,
        data_class: str | None = None,
        purpose: str | None = None,
        *,
        customer: str | None = None,
    ) -> None:
        """403 unless the policy allows it; a refusal is counted and audited (best effort: the
        refusal stands either way)."""
        decision = self.policy.authorize(principal, action, data_class, purpose)
        if not decision.allowed:
            self.metrics.denied.labels(action, data_class or "").inc()
            ctag = self.tagger.customer_tag(customer) if customer is not None else None
            record = self._record(principal, action, ctag, data_class, purpose=purpose, outcome="denied")
            task = asyncio.ensure_future(record)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # best effort: never unretrieved
            raise errors.Forbidden(decision.reason)

    async def _record(
        self,
        principal: Principal | None,
        action: str,
        customer_tag: str | None = None,
        data_class: str | None = None,
        name_tag: str | None = None,
        purpose: str | None = None,
        *,
        outcome: str = "allowed",
        refuse: str | None = None,
    ) -> None:
        """One audit record of an access. With ``refuse`` (what is refused, e.g. ``"writes"``) the
        call fails closed: no record, 503. Without, it is best effort."""
        try:
            await self.audit.append_async(
                principal=principal.name if principal else "anonymous",
                action=action,
                outcome=outcome,
                customer_tag=customer_tag,
                data_class=data_class,
                name_tag=name_tag,
                purpose=purpose,
            )
        except (AuditUnavailable, ValueError):
            if refuse is not None:
                raise errors.ServiceUnavailable(f"the audit log cannot be written; {refuse} are refused") from None
            log.warning("audit record not written", extra={"action": action, "outcome": outcome})

    def next_version(self, held: Hold) -> Version:
        """A version for a write under ``held``: above any the name's lock has seen (another node's clock)."""
        if held.floor is not None:
            self.clock.observe(Version.parse(held.floor))
        version = self.clock.now()
        held.wrote(str(version))
        return version

    def expired(self, meta: Written) -> bool:
        """Past its class's retention now (:func:`replicator.retention.expired`)."""
        return expired(meta, self.now_ms(), self.retention)

    def no_longer_kept(self, meta: Kept) -> bool:
        """A kept version past its class's retention or keep window now (:mod:`replicator.retention`)."""
        return no_longer_kept(meta, self.now_ms(), self.retention, self.keep)

    # A cached key is taken on the event loop; a miss is awaited (keys.provider awaited_key_reads:
    # a key store's own call, or the keyring file's in a worker thread).
    async def _dek_for_write(self, customer: str) -> DataKey:
        try:
            cached = self.keys.dek_at_hand(customer)
            return cached if cached is not None else await self._key_reads.get_or_create_dek_async(customer)
        except KeyDestroyed:
            raise errors.Gone("this customer's data was erased; writes are refused") from None
        except KeyringError as e:
            raise _keys_unavailable(e) from None

    async def _dek(self, dek_id: str) -> bytes:
        return await self._key_by_id(self.keys.key_at_hand, self.keys.get_dek, dek_id)

    async def _name_key(self, dek_id: str) -> bytes:
        """The name key of ``dek_id``'s generation: opens names without touching a content key."""
        return await self._key_by_id(self.keys.name_key_at_hand, self.keys.get_name_key, dek_id)

    async def _open_name(self, dek_id: str, sealed: str, ad: bytes, dek: bytes | None = None) -> tuple[str, str]:
        """The real name and content type in an object's metadata: under its name key, or (a legacy
        seal, :mod:`keys.tags`) under its DEK, ``dek`` when the caller holds it already."""
        if sealed_version(sealed) == NAME_KEY_SEAL:
            return open_name(await self._name_key(dek_id), sealed, ad)
        return open_name(dek if dek is not None else await self._dek(dek_id), sealed, ad)

    async def _key_and_type(self, customer: str, dek_id: str, sealed: str, ad: bytes) -> tuple[bytes, str]:
        """The DEK of a read of ``customer``'s object and its content type; 410 if the customer is
        erased. Keys at hand are taken on the loop; else one ``keys_for_read`` (a key store answers
        the keys and the erasure with one query)."""
        legacy = sealed_version(sealed) != NAME_KEY_SEAL  # sealed under the DEK (keys.tags)
        with _key_errors():
            at_hand = self.keys.key_at_hand(dek_id)
            name_key = None if legacy or at_hand is None else self.keys.name_key_at_hand(dek_id)
            if at_hand is None or (name_key is None and not legacy):
                dek, name_key = await self._key_reads.keys_for_read_async(customer, dek_id)
            else:
                dek = at_hand
        if legacy:
            return dek, open_name(dek, sealed, ad)[1]
        if name_key is None:
            raise errors.ServiceUnavailable("the object's name key is not in the key store") from None
        return dek, open_name(name_key, sealed, ad)[1]

    async def _key_by_id(
        self, at_hand: Callable[[str], bytes | None], get: Callable[[str], bytes], dek_id: str
    ) -> bytes:
        with _key_errors():
            cached = at_hand(dek_id)
            return cached if cached is not None else await asyncio.to_thread(get, dek_id)

    async def _refuse_if_erased(self, customer: str) -> None:
        if not self._refused_at_hand(customer):
            try:
                erased = await asyncio.to_thread(self.keys.destroyed_at, customer)
            except KeyringError as e:
                raise _keys_unavailable(e) from None
            if erased is not None:
                raise errors.Gone("this customer's data was erased")

    def _refused_at_hand(self, customer: str) -> bool:
        """Raise as :meth:`_refuse_if_erased` would if the provider can tell without waiting (the
        keyring file: a stat, no thread hop); False when only a thread can ask (a key store)."""
        try:
            at_hand = self.keys.destroyed_at_hand(customer)
        except KeyringError as e:
            raise _keys_unavailable(e) from None
        if at_hand is None:
            return False
        if at_hand[0] is not None:
            raise errors.Gone("this customer's data was erased")
        return True

    async def _journal(self, kind: Kind, path: str, src: str, dst: str, version: str = "", size: int = 0) -> None:
        try:
            await self.journal.add(kind, path, src=src, dst=dst, version=version, size=size)
        except JournalError as e:  # a shared journal's database is away: not acknowledged, retry later
            raise errors.ServiceUnavailable("the journal is unavailable; retry the request later") from e
        self.on_journal()

    async def _put_all(
        self,
        path: str,
        body: bytes,
        meta: dict[str, str],
        put: Callable[[str], Awaitable[Any]] | None = None,
        regions: list[str] | None = None,
    ) -> list[Any]:
        """Put ``body`` to every region (or ``regions``) at once (or run ``put(region)`` for each), outcomes as
        ``gather(return_exceptions=True)`` gives them. A region still busy ``straggler_grace`` after
        another stored it counts as failed: its call is cancelled and the caller journals a copy for it."""
        put = put or (lambda r: self.regions[r].put(path, body, meta))
        regions = regions or self.order
        puts = {r: asyncio.ensure_future(put(r)) for r in regions}
        async with cancelled_on_exit(puts):
            await with_grace(puts, self.straggler_grace)
        return [outcome(r, puts[r], self.straggler_grace, path) for r in regions]


@contextlib.contextmanager
def _key_errors() -> Iterator[None]:
    """A key lookup's failures as the API's answers."""
    try:
        yield
    except KeyDestroyed:
        raise errors.Gone("this customer's data was erased") from None
    except UnknownKey:
        raise errors.ServiceUnavailable("the object's data key is not in the keyring") from None
    except KeyringError as e:  # fail closed: a node that cannot ask the key store decrypts nothing
        raise _keys_unavailable(e) from None


def _keys_unavailable(e: KeyringError) -> errors.ServiceUnavailable:
    log.warning("key provider refused: %s", e)  # messages name stores and key ids, never keys
    return errors.ServiceUnavailable("the key store cannot be reached; nothing is decrypted until it answers")


def plaintext_size(stored_size: int, dek_id: str) -> int:
    """The plaintext length behind a stored ciphertext of ``stored_size`` bytes (tombstones: 0).

    A size no ciphertext can have (a damaged object) gives the stored size, an upper bound, instead
    of an error, so one damaged object does not fail a listing; reading it fails its check and
    journals its repair."""
    if stored_size == 0:
        return 0
    try:
        return _exact_plaintext_size(stored_size, dek_id)
    except DecryptionFailed:
        return stored_size
