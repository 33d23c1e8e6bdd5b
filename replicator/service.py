"""The paths through the service: write, read, head, delete, list.

Theory of operation
-------------------
Every call is authorized against the policy first. An object lives at
``v1/<customer tag>/<class>/<name tag>`` in both regions, as ciphertext,
with the metadata of :mod:`replicator.layout` (version, class, write time,
DEK id, sealed name).

Write: SIN check and size limit on the plaintext as it streams, encrypt,
then put to both regions at once (:class:`~replicator.fanout.FanOut`). A
region put is atomic, and the SIN and size checks fail the stream *before*
its end, so a refused write leaves nothing in either region. Acknowledged
``complete`` when both regions hold it; ``degraded`` when one does and a
journal row that will copy it to the other is durable; 503 when none does.
Small bodies (``content_length`` ≤ ``small_body``) are buffered and put from
bytes, so the region drivers may retry them.

Read: authorize → head both regions at once → the highest version wins
(tombstone → 404, past retention → 410) → audit record written (fail closed)
→ get from the winning region, decrypt as it streams. A region that misses
the object, holds an older version, or fails its digest or GCM check gets a
journal row to bring it level, and the read moves to the other region if no
plaintext was sent yet. Once plaintext is flowing, a later failure aborts
the response: the client sees a broken transfer, never a clean short body.

Writes and replication workers hold the name's lock (``NameLocks``), so a
copy never overwrites a newer write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from keys import AuditLog, AuditUnavailable, KeyDestroyed, Policy, Principal
from keys.provider import KeyProvider, UnknownKey
from keys.sin import SinScanner
from keys.stream import (
    DecryptionFailed,
    ciphertext_size,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    object_ad,
)
from keys.tags import name_ad, open_name, seal_name
from regions import NotFound as RegionNotFound
from regions import ObjectInfo, Region, RegionError
from regions import Unavailable as RegionUnavailable

from . import errors
from .fanout import FanOut
from .hlc import Clock
from .journal import Journal, JournalError
from .layout import ObjectMeta, customer_prefix
from .merge import merged
from .metrics import Metrics
from .names import check_customer, check_name
from .replication import NameLocks

MiB = 1 << 20
log = logging.getLogger(__name__)
DAY_MS = 86_400_000
_PURPOSE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


@dataclass(frozen=True)
class Replica:
    """What one region holds for a name."""

    region: str
    info: ObjectInfo
    meta: ObjectMeta


@dataclass
class Lookup:
    """Both regions' answers for one name, and the winner."""

    winner: Replica | None
    replicas: dict[str, Replica | None]          # None: the region does not have it
    failures: dict[str, RegionError] = field(default_factory=dict)

    def state(self, region: str) -> str:
        if region in self.failures:
            return "unavailable"
        replica = self.replicas.get(region)
        if replica is None:
            return "missing"
        return "current" if self.winner and replica.meta.version == self.winner.meta.version else "stale"


@dataclass(frozen=True)
class WriteResult:
    version: str
    size: int
    replication: str                  # "complete" | "degraded"
    regions: dict[str, str]           # region -> "stored" | "pending"


@dataclass
class Reading:
    version: str
    content_type: str
    size: int
    body: AsyncIterator[bytes]


@dataclass(frozen=True)
class HeadResult:
    version: str
    size: int
    data_class: str
    replication: str                  # "complete" | "pending"
    regions: dict[str, str]           # region -> current | stale | missing | unavailable


class Service:
    def __init__(self, *, policy: Policy, keys: KeyProvider, regions: dict[str, Region], journal: Journal,
                 audit: AuditLog, metrics: Metrics, clock: Clock, read_preference: str,
                 locks: NameLocks | None = None, max_object_bytes: int = 5 << 30,
                 small_body: int = 4 * MiB, now_ms: Callable[[], int] | None = None,
                 on_journal: Callable[[], None] = lambda: None, straggler_grace: float = 2.0):
        self.policy = policy
        self.keys = keys
        self.tagger = keys.tagger()
        self.regions = regions
        self.journal = journal
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.order = [read_preference] + [r for r in regions if r != read_preference]
        self.locks = locks or NameLocks()
        self.max_object_bytes = max_object_bytes
        self.small_body = small_body
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.on_journal = on_journal  # wakes the replication workers
        self.straggler_grace = straggler_grace

    # -- checks shared by every path ------------------------------------------------

    def _class(self, data_class: str):
        dc = self.policy.data_class(data_class)
        if dc is None:
            raise errors.BadRequest(f"unknown data class {data_class!r} "
                                    f"(one of {', '.join(sorted(self.policy.classes))})")
        return dc

    def authorize(self, principal: Principal | None, action: str, data_class: str | None = None,
                  purpose: str | None = None) -> None:
        decision = self.policy.authorize(principal, action, data_class, purpose)
        if not decision.allowed:
            self.metrics.denied.labels(action, data_class or "").inc()
            raise errors.Forbidden(decision.reason)

    def expired(self, meta: ObjectMeta) -> bool:
        dc = self.policy.data_class(meta.data_class)
        days = dc.retention_days if dc else None
        return days is not None and self.now_ms() - meta.written_ms > days * DAY_MS

    # A cached key is taken on the event loop; only a miss (file I/O, a lock held) hops to a thread.
    async def _dek_for_write(self, customer: str):
        try:
            return (self.keys.dek_at_hand(customer)
                    or await asyncio.to_thread(self.keys.get_or_create_dek, customer))
        except KeyDestroyed:
            raise errors.Gone("this customer's data was erased; writes are refused") from None

    async def _dek(self, dek_id: str) -> bytes:
        try:
            return self.keys.key_at_hand(dek_id) or await asyncio.to_thread(self.keys.get_dek, dek_id)
        except KeyDestroyed:
            raise errors.Gone("this customer's data was erased") from None
        except UnknownKey:
            raise errors.Unavailable("the object's data key is not in the keyring") from None

    async def _refuse_if_erased(self, customer: str) -> None:
        if await asyncio.to_thread(self.keys.destroyed_at, customer) is not None:
            raise errors.Gone("this customer's data was erased")

    async def _journal(self, kind: str, path: str, src: str, dst: str, version: str = "") -> None:
        try:
            await self.journal.add(kind, path, src=src, dst=dst, version=version)
        except JournalError as e:  # a shared journal's database is away: not acknowledged, retry later
            raise errors.Unavailable("the journal is unavailable; retry the request later") from e
        self.on_journal()

    # -- looking a name up in both regions -------------------------------------------

    async def lookup(self, path: str) -> Lookup:
        """Every region's head of ``path``; a region that hangs costs ``straggler_grace``, not its timeout.

        Once one region has answered, the others get ``straggler_grace`` more
        seconds and then count as unavailable. Serving without a late region
        is safe unless it alone holds the newest version: that is the case
        only when the journal still owes an answering region work on this
        name, and then we wait for the late one after all.
        """
        async def head(region: Region):
            try:
                info = await region.head(path)
                return Replica(region.name, info, ObjectMeta.of(info))
            except RegionNotFound:
                return None

        heads = {r: asyncio.ensure_future(head(self.regions[r])) for r in self.order}
        async with _cancelled_on_exit(heads):
            answered = await _with_grace(heads, self.straggler_grace)
            late = any(not h.done() for h in heads.values())
            if late and await self._may_be_behind(path, answered):
                await asyncio.wait(heads.values())
        answers = [_outcome(r, heads[r], self.straggler_grace, path) for r in self.order]
        found = Lookup(None, {})
        for name, answer in zip(self.order, answers):
            if isinstance(answer, RegionError):
                found.failures[name] = answer
            elif isinstance(answer, ValueError):  # metadata we did not write: treat as missing
                found.replicas[name] = None
            elif isinstance(answer, BaseException):
                raise answer
            else:
                found.replicas[name] = answer
                if answer is not None and (found.winner is None or answer.meta.version > found.winner.meta.version):
                    found.winner = answer
        if found.winner is not None:  # our next stamps exceed what we saw, whatever our wall clock says
            self.clock.observe(found.winner.meta.version)
        return found

    async def _may_be_behind(self, path: str, regions: set[str]) -> bool:
        """Whether one of ``regions`` may lack ``path``'s newest version: the journal owes it work
        on that name. When the journal cannot say, assume it may."""
        try:
            return bool(await self.journal.behind(path) & regions)
        except JournalError:
            return True

    def _raise_if_none(self, found: Lookup) -> Replica:
        if found.winner is None:
            if found.failures and len(found.failures) == len(self.order):
                raise errors.Unavailable("no region answered: " + "; ".join(
                    f"{r}: {type(e).__name__}" for r, e in found.failures.items()))
            raise errors.NotFound("no such object")
        return found.winner

    async def _live(self, customer: str, data_class: str, path: str) -> tuple[Lookup, Replica]:
        """The winning replica of a live object: 410 if erased or expired, 404 if missing or deleted."""
        await self._refuse_if_erased(customer)
        found = await self.lookup(path)
        winner = self._raise_if_none(found)
        if winner.meta.tombstone:
            raise errors.NotFound("no such object (deleted)")
        if self.expired(winner.meta):
            raise errors.Gone(f"the object is past its class's retention ({data_class})")
        return found, winner

    async def _level(self, path: str, found: Lookup) -> None:
        """Journal a copy to every region that answered without the winning version."""
        for region, state in ((r, found.state(r)) for r in self.order):
            if state in ("missing", "stale"):
                await self._journal("copy", path, found.winner.region, region, str(found.winner.meta.version))

    async def _on_read(self, repair: Awaitable[None]) -> None:
        """Repairs a read finds are owed, not promised: with the journal away the read goes on
        (the reconciler finds the same difference tonight)."""
        try:
            await repair
        except errors.Unavailable:
            log.warning("journal unavailable: a repair found by a read is left to the reconciler")

    # -- write -------------------------------------------------------------------------

    async def put(self, principal: Principal | None, customer: str, data_class: str, name: str,
                  body: AsyncIterator[bytes], *, content_type: str = "application/octet-stream",
                  content_length: int | None = None, if_none_match: bool = False) -> WriteResult:
        check_customer(customer)
        check_name(name)
        dc = self._class(data_class)
        self.authorize(principal, "write", data_class)
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise errors.BadRequest("Content-Type must be printable ASCII, at most 255 characters")
        if content_length is not None and content_length > self.max_object_bytes:
            raise errors.TooLarge(f"body of {content_length} bytes is over the limit of "
                                  f"{self.max_object_bytes} bytes")
        dek = await self._dek_for_write(customer)
        path = self.tagger.object_name(customer, data_class, name)
        ctag, _, ntag = path.split("/")[1:]
        async with self.locks.hold(path):
            if if_none_match:
                found = await self.lookup(path)
                if found.failures:
                    raise errors.Unavailable("cannot check If-None-Match: a region did not answer")
                w = found.winner
                if w is not None and not w.meta.tombstone and not self.expired(w.meta):
                    raise errors.PreconditionFailed("the object exists (If-None-Match: *)")
            version = self.clock.now()
            meta = ObjectMeta(version=version, data_class=data_class, written_ms=self.now_ms(),
                              dek_id=dek.dek_id,
                              sealed_name=seal_name(dek.key, name, content_type, name_ad(ctag, data_class, ntag)))
            ad = object_ad(customer, data_class, name, str(version))
            checked = _Checked(body, self.max_object_bytes, scan_sin=not dc.sin_allowed)
            if content_length is not None and content_length <= self.small_body:
                plaintext = b"".join([c async for c in checked])
                cipher = encrypt_bytes(plaintext, dek.key, dek.dek_id, ad)
                outcomes = await self._put_all(path, cipher, meta.to_meta())
            else:
                outcomes = await self._put_streaming(path, encrypt_stream(checked, dek.key, dek.dek_id, ad),
                                                     meta.to_meta())
            stored = [r for r, o in zip(self.order, outcomes) if not isinstance(o, BaseException)]
            failed = {r: o for r, o in zip(self.order, outcomes) if isinstance(o, BaseException)}
            for o in failed.values():
                if not isinstance(o, RegionError):
                    raise o
            if not stored:
                raise errors.Unavailable("no region stored the object: " + "; ".join(
                    f"{r}: {type(e).__name__}" for r, e in failed.items()))
            for region in failed:
                await self._journal("copy", path, stored[0], region, str(version))
            if failed:
                self.metrics.degraded_writes.inc()
        self.metrics.http_bytes.labels("in").inc(checked.size)
        return WriteResult(version=str(version), size=checked.size,
                           replication="degraded" if failed else "complete",
                           regions={r: ("pending" if r in failed else "stored") for r in self.order})

    async def _put_all(self, path: str, body: bytes, meta: dict[str, str]) -> list:
        """Put ``body`` to every region at once, outcomes as ``gather(return_exceptions=True)``
        gives them. A region still busy ``straggler_grace`` after another stored it counts as
        failed: its call is cancelled and the caller journals a copy for it."""
        puts = {r: asyncio.ensure_future(self.regions[r].put(path, body, meta)) for r in self.order}
        async with _cancelled_on_exit(puts):
            await _with_grace(puts, self.straggler_grace)
        return [_outcome(r, puts[r], self.straggler_grace, path) for r in self.order]

    async def _put_streaming(self, path: str, ciphertext: AsyncIterator[bytes], meta: dict[str, str]) -> list:
        fan = FanOut(ciphertext, len(self.order))

        async def put(i: int, region: Region):
            try:
                return await region.put(path, fan.consumer(i), meta)
            finally:
                fan.release(i)

        fan.start()
        outcomes = await asyncio.gather(*(put(i, self.regions[r]) for i, r in enumerate(self.order)),
                                        return_exceptions=True)
        try:
            await fan.wait()
        except RegionError:
            pass  # a region failing is reported per region below
        return outcomes

    # -- read --------------------------------------------------------------------------

    async def open_read(self, principal: Principal | None, customer: str, data_class: str, name: str,
                        purpose: str | None) -> Reading:
        check_customer(customer)
        check_name(name)
        self._class(data_class)
        if not purpose:
            raise errors.BadRequest("the X-Purpose header is required to read")
        if not _PURPOSE.fullmatch(purpose):
            raise errors.BadRequest("X-Purpose must be a purpose name such as 'service'")
        path = self.tagger.object_name(customer, data_class, name)
        ctag, _, ntag = path.split("/")[1:]
        decision = self.policy.authorize(principal, "read", data_class, purpose)
        if not decision.allowed:
            self.metrics.denied.labels("read", data_class).inc()
            try:
                await self.audit.append_async(principal=principal.name if principal else "anonymous",
                                              action="read", outcome="denied", customer_tag=ctag,
                                              data_class=data_class, name_tag=ntag, purpose=purpose)
            except (AuditUnavailable, ValueError):
                pass  # the read is refused either way
            raise errors.Forbidden(decision.reason)
        found, winner = await self._live(customer, data_class, path)
        await self._on_read(self._level(path, found))
        key = await self._dek(winner.meta.dek_id)
        try:
            await self.audit.append_async(principal=principal.name, action="read", outcome="allowed",
                                          customer_tag=ctag, data_class=data_class, name_tag=ntag,
                                          purpose=purpose)
        except AuditUnavailable:
            raise errors.Unavailable("the audit log cannot be written; reads are refused") from None
        _, content_type = open_name(key, winner.meta.sealed_name, name_ad(ctag, data_class, ntag))
        ad = object_ad(customer, data_class, name, str(winner.meta.version))
        sources = [winner.region] + [r for r in self.order if r != winner.region and found.state(r) == "current"]
        body = await self._open_body(path, sources, key, ad)
        self.metrics.decrypts.labels(data_class, purpose).inc()
        return Reading(version=str(winner.meta.version), content_type=content_type,
                       size=plaintext_size(winner.info.size, winner.meta.dek_id), body=body)

    async def _open_body(self, path: str, sources: list[str], key: bytes, ad: bytes) -> AsyncIterator[bytes]:
        """Decrypting stream from the first source whose first segment verifies."""
        last: BaseException | None = None
        for i, region in enumerate(sources):
            try:
                _, ciphertext = await self.regions[region].get(path)
                plain = decrypt_stream(ciphertext, key, ad)
                first = await anext(plain, None)
            except (RegionError, DecryptionFailed) as e:
                last = e
                await self._on_read(self._repair_from_others(path, region, sources[:i] + sources[i + 1:], e))
                continue
            return self._rest(path, region, sources, first, plain)
        if isinstance(last, RegionUnavailable) or isinstance(last, RegionNotFound):
            raise errors.Unavailable("no region could serve the object")
        raise errors.Unavailable("every copy of the object failed its integrity check")

    async def _rest(self, path, region, sources, first, plain) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for chunk in plain:
                yield chunk
        except (RegionError, DecryptionFailed) as e:
            await self._on_read(self._repair_from_others(path, region, [r for r in sources if r != region], e))
            raise

    async def _repair_from_others(self, path: str, bad: str, others: list[str], error: BaseException) -> None:
        # No other source answered this look-up (down, say): repair from it anyway. The row waits in the
        # journal until it answers, and copy_newest never puts an older version over a newer one.
        others = others or [r for r in self.order if r != bad]
        if others and not isinstance(error, RegionUnavailable):
            await self._journal("repair", path, others[0], bad)

    # -- head, delete ---------------------------------------------------------------------

    async def head(self, principal: Principal | None, customer: str, data_class: str, name: str) -> HeadResult:
        check_customer(customer)
        check_name(name)
        self._class(data_class)
        self.authorize(principal, "meta", data_class)
        path = self.tagger.object_name(customer, data_class, name)
        found, winner = await self._live(customer, data_class, path)
        states = {r: found.state(r) for r in self.order}
        return HeadResult(version=str(winner.meta.version), size=plaintext_size(winner.info.size, winner.meta.dek_id),
                          data_class=data_class,
                          replication="complete" if all(s == "current" for s in states.values()) else "pending",
                          regions=states)

    async def delete(self, principal: Principal | None, customer: str, data_class: str, name: str) -> dict:
        check_customer(customer)
        check_name(name)
        self._class(data_class)
        self.authorize(principal, "delete", data_class)
        await self._refuse_if_erased(customer)
        path = self.tagger.object_name(customer, data_class, name)
        async with self.locks.hold(path):
            found = await self.lookup(path)
            winner = self._raise_if_none(found)
            if winner.meta.tombstone and not found.failures:
                # A region reported "pending" must get a journal row: a crash between the two
                # tombstone puts leaves one region with the old live copy and no row for it.
                await self._level(path, found)
                return {"version": str(winner.meta.version),
                        "regions": {r: "deleted" if found.state(r) == "current" else "pending" for r in self.order}}
            version = self.clock.now()
            tomb = ObjectMeta(version=version, data_class=data_class, written_ms=self.now_ms(), tombstone=True)
            outcomes = await self._put_all(path, b"", tomb.to_meta())
            done = [r for r, o in zip(self.order, outcomes) if not isinstance(o, BaseException)]
            failed = [r for r, o in zip(self.order, outcomes) if isinstance(o, BaseException)]
            if not done:
                raise errors.Unavailable("no region recorded the delete")
            for region in failed:
                await self._journal("copy", path, done[0], region, str(version))
        return {"version": str(version), "regions": {r: "pending" if r in failed else "deleted" for r in self.order}}

    # -- list ------------------------------------------------------------------------------

    async def list(self, principal: Principal | None, customer: str, data_class: str, *,
                   cursor: str | None = None, limit: int = 100) -> dict:
        check_customer(customer)
        self._class(data_class)
        self.authorize(principal, "meta", data_class)
        if not 1 <= limit <= 1000:
            raise errors.BadRequest("limit must be between 1 and 1000")
        await self._refuse_if_erased(customer)
        ctag = self.tagger.customer_tag(customer)
        prefix = f"{customer_prefix(ctag)}{data_class}/"
        if cursor is not None and not (cursor.startswith(prefix) and len(cursor) <= len(prefix) + 64):
            raise errors.BadRequest("cursor does not belong to this listing")
        down: list[str] = []
        a, b = (self._listing(self.regions[r], prefix, down) for r in self.order)
        objects, last, keys = [], None, {}
        async for path, x, y in merged(a, b):
            if cursor is not None and path.encode() <= cursor.encode():
                continue  # the regions cannot start a listing after a name: skip up to the cursor
            best = max((ObjectMeta.of(i) for i in (x, y) if i is not None), key=lambda m: m.version)
            if best.tombstone or self.expired(best):
                continue
            if len(objects) == limit:
                return {"objects": objects, "cursor": last}
            if best.dek_id not in keys:
                keys[best.dek_id] = await self._dek(best.dek_id)
            info = x if x is not None and ObjectMeta.of(x).version == best.version else y
            real, _ = open_name(keys[best.dek_id], best.sealed_name, name_ad(ctag, data_class, path.rsplit("/", 1)[1]))
            objects.append({"name": real, "class": data_class, "version": str(best.version),
                            "size": plaintext_size(info.size, best.dek_id)})
            last = path
        if len(down) == len(self.order):
            raise errors.Unavailable("no region could list the objects")
        return {"objects": objects, "cursor": None}

    @staticmethod
    async def _listing(region: Region, prefix: str, down: list[str]) -> AsyncIterator[ObjectInfo]:
        """A region's listing; if the region is down, an empty one (the other still answers)."""
        try:
            async for info in region.list(prefix):
                yield info
        except RegionError:
            down.append(region.name)


    # -- erasure and export ------------------------------------------------------------------

    async def erase(self, principal: Principal | None, customer: str, eraser) -> dict:
        """Crypto-shred the customer's key now, then sweep both regions in the background."""
        check_customer(customer)
        self.authorize(principal, "erase")
        ctag = self.tagger.customer_tag(customer)
        destroyed_at = await asyncio.to_thread(self.keys.destroy, customer)
        try:
            await self.audit.append_async(principal=principal.name, action="erase", outcome="allowed",
                                          customer_tag=ctag)
        except AuditUnavailable:
            pass  # an erasure is the customer's right: it is not refused for want of an audit line
        erasure = await self.journal.create_erasure(ctag, destroyed_at.isoformat(), list(self.order))
        eraser.start(erasure)
        return {"erasure": erasure.id, "key_destroyed_at": destroyed_at.isoformat()}

    async def erasure(self, principal: Principal | None, erasure_id: str) -> dict:
        self.authorize(principal, "erase")
        erasure = await self.journal.erasure(erasure_id)
        if erasure is None:
            raise errors.NotFound("no such erasure")
        return {"erasure": erasure.id, "state": erasure.state, "key_destroyed_at": erasure.key_destroyed_at,
                "regions": erasure.regions}

    async def export(self, principal: Principal | None, customer: str) -> AsyncIterator[bytes]:
        """Authorize and audit one export; return the tar stream (see :mod:`replicator.export`)."""
        from .export import export_tar

        check_customer(customer)
        self.authorize(principal, "export")
        ctag = self.tagger.customer_tag(customer)
        await self._refuse_if_erased(customer)
        try:
            await self.audit.append_async(principal=principal.name, action="export", outcome="allowed",
                                          customer_tag=ctag)
        except AuditUnavailable:
            raise errors.Unavailable("the audit log cannot be written; exports are refused") from None
        return export_tar(self, customer, ctag)


async def _with_grace(calls: dict[str, asyncio.Future], grace: float) -> set[str]:
    """Wait for every region's call, or until ``grace`` seconds after the first one succeeded.

    Returns the regions whose call succeeded (answered without a RegionError).
    Failures do not start the grace: while no region has answered, we wait
    for each one's own deadline.
    """
    loop = asyncio.get_running_loop()
    pending, deadline = set(calls.values()), None
    while pending:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break  # the grace is over
        if deadline is None and any(_succeeded(f) for f in done):
            deadline = loop.time() + grace
    return {r for r, f in calls.items() if f.done() and _succeeded(f)}


def _succeeded(call: asyncio.Future) -> bool:
    return not call.cancelled() and not isinstance(call.exception(), RegionError)


def _outcome(region: str, call: asyncio.Future, grace: float, path: str):
    """A region call's result or exception, as ``gather(return_exceptions=True)`` gives it; a call
    still running after the grace is an ``Unavailable`` of its own."""
    if call.done() and not call.cancelled():
        return call.exception() or call.result()
    return RegionUnavailable(f"no answer within {grace:g}s of the other region", region=region, name=path)


@contextlib.asynccontextmanager
async def _cancelled_on_exit(calls: dict[str, asyncio.Future]):
    """Cancel whatever region calls are still running when the block ends (late, or we were cancelled)."""
    try:
        yield
    finally:
        for call in calls.values():
            call.cancel()


class _Checked:
    """The plaintext stream as it arrives: counts it, enforces the size limit, looks for a SIN.

    Both checks raise from inside the stream, before its end, so no region
    put can complete with a refused body.
    """

    def __init__(self, body: AsyncIterator[bytes], limit: int, *, scan_sin: bool):
        self._body = body
        self._limit = limit
        self._scanner = SinScanner() if scan_sin else None
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            self.size += len(chunk)
            if self.size > self._limit:
                raise errors.TooLarge(f"body is over the limit of {self._limit} bytes")
            if self._scanner is not None and self._scanner.feed(chunk):
                raise errors.SinRefused("the body holds what looks like a Canadian SIN; "
                                        "this class may not store one")
            yield chunk
        if self._scanner is not None and self._scanner.finish():
            raise errors.SinRefused("the body holds what looks like a Canadian SIN; this class may not store one")


def plaintext_size(stored_size: int, dek_id: str) -> int:
    """The plaintext length behind a stored ciphertext of ``stored_size`` bytes (tombstones: 0)."""
    if stored_size == 0:
        return 0
    lo, hi = 0, stored_size
    while lo < hi:  # ciphertext_size is increasing in the plaintext size
        mid = (lo + hi) // 2
        if ciphertext_size(mid, dek_id) < stored_size:
            lo = mid + 1
        else:
            hi = mid
    return lo
