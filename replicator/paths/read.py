"""The read path: authorize and audit, then stream the winning replica, decrypted.

Authorize → the near region's copy, when the journal owes that region
nothing on the name (:meth:`~.lookup.LookupPath.near_lookup`: one GET, the
far region not asked), else a look-up in both regions (:mod:`.lookup`: the
highest version wins) → tombstone 404, past retention 410 → audit record
written (fail closed: no record, no plaintext; group committed) → decrypt as
it streams. When both regions were looked at, a region that misses the
object or holds an older version gets a journal row to bring it level (a
loss the journal does not know of, behind a fast read, is the reconciler's
to find); a copy that fails its digest or GCM check gets one too, and the
read moves to the other region if no plaintext was sent yet.
Once plaintext is flowing, a later failure aborts the response: the client
sees a broken transfer, never a clean short body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keys import AuditUnavailable, KeyringError, Principal
from keys.ranges import RangePlan, decrypt_range_stream, plan_range
from keys.stream import DecryptionFailed, decrypt_stream, object_ad
from keys.tags import name_ad
from regions import ByteRange, Reader, RegionError
from regions import NotFound as RegionNotFound
from regions import Unavailable as RegionUnavailable
from replicator import errors
from replicator.layout import ObjectPath
from replicator.paths.base import plaintext_size
from replicator.paths.names import check_customer, check_object_name, check_purpose
from replicator.paths.versions import VersionsPath


@dataclass(frozen=True)
class Span:
    """One byte range a reader asked for (HTTP ``Range: bytes=``): ``start``-``end`` (``end`` None: to
    the end), or the last ``suffix`` bytes."""

    start: int = 0
    end: int | None = None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int]:
        """First and last byte (inclusive) within an object of ``size`` bytes; 416 when none is."""
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                raise errors.RangeNotSatisfiable("the range selects no byte of the object", size)
            return max(0, size - self.suffix), size - 1
        if self.start >= size:
            raise errors.RangeNotSatisfiable(f"the range starts at or past the end of the object ({size} bytes)", size)
        return self.start, size - 1 if self.end is None else min(self.end, size - 1)


@dataclass
class Reading:
    version: str
    content_type: str
    size: int  # bytes in ``body``
    body: AsyncIterator[bytes]
    total: int = 0  # the whole object's size
    span: tuple[int, int] | None = None  # first and last byte sent, for a range read

    async def whole(self) -> bytes:
        """All of ``body``, for a caller that sends nothing before it has it; a copy that fails
        as it is read is a 503 then (a repair is journaled), since no byte went out."""
        try:
            return b"".join([chunk async for chunk in self.body])
        except (RegionError, DecryptionFailed):
            raise errors.ServiceUnavailable("the object's copy failed as it was read; retry the read") from None


# How often a streaming read asks whether its key still lives (a store query for a cluster).
KEY_RECHECK = 0.1


class ReadPath(VersionsPath):
    async def open_read(
        self,
        principal: Principal | None,
        customer: str,
        data_class: str,
        name: str,
        purpose: str | None,
        *,
        version: str | None = None,
        span: Span | None = None,
        if_none_match: tuple[str, ...] | None = None,
    ) -> Reading:
        """The object (or its kept ``version``, or ``span`` of it) decrypted as it streams; 304
        (:class:`~replicator.errors.NotModified`) when ``if_none_match`` names what would be sent."""
        check_customer(customer)
        check_object_name(name)
        self._class(data_class)
        purpose = check_purpose(purpose)
        where = ObjectPath.of(self.tagger, customer, data_class, name)
        path, ctag, ntag = str(where), where.customer_tag, where.name_tag
        decision = self.policy.authorize(principal, "read", data_class, purpose)
        if not decision.allowed:
            self.metrics.denied.labels("read", data_class).inc()
            try:
                await self.audit.append_async(
                    principal=principal.name if principal else "anonymous",
                    action="read",
                    outcome="denied",
                    customer_tag=ctag,
                    data_class=data_class,
                    name_tag=ntag,
                    purpose=purpose,
                )
            except (AuditUnavailable, ValueError):
                pass  # the read is refused either way
            raise errors.Forbidden(decision.reason)
        assert principal is not None  # authorized above
        opened: Reader | None = None  # the near region's body, when the fast path opened it
        fast = False  # the near region alone was asked (LookupPath.near_lookup)
        if version is None:
            # Erased (410) comes before anything else. The keyring file says so at hand; a key store
            # is asked once, after the look-up, with the keys (keys_for_read in _key_and_type), and
            # separately only when the look-up finds nothing to read.
            erasure_checked = self._refused_at_hand(customer)
            near = await self.near_lookup(path, with_body=span is None)
            if near is not None:
                fast = True
                found, opened = near
                try:
                    winner = self._current(found, data_class)
                except BaseException as e:
                    if opened is not None:
                        await opened.aclose()
                    if isinstance(e, errors.Missing | errors.Gone) and not erasure_checked:
                        await self._refuse_if_erased(customer)
                    raise
            else:
                found, winner = await self._live(customer, data_class, path)  # asks the erasure itself
                erasure_checked = True
        else:
            one = await self._find_version(customer, data_class, path, version)  # likewise
            if one.winner.meta.tombstone:
                raise errors.Missing(f"version {version} is a delete marker: it has no content")
            path, found, winner = one.path, one.lookup, one.winner
            erasure_checked = True
        if not erasure_checked and (if_none_match is not None or span is not None):
            try:  # a 304 or a 416 below answers before the keys are asked: not for an erased customer
                await self._refuse_if_erased(customer)
            except BaseException:
                if opened is not None:
                    await opened.aclose()
                raise
        stamp = str(winner.meta.version)
        if if_none_match is not None and ("*" in if_none_match or stamp in if_none_match):
            if opened is not None:
                await opened.aclose()
            raise errors.NotModified(stamp)
        total = plaintext_size(winner.info.size, winner.meta.dek_id)
        plan = None
        if span is not None:
            start, end = span.resolve(total)
            try:
                plan = plan_range(winner.info.size, winner.meta.dek_id, start, end)
            except DecryptionFailed:
                raise errors.ServiceUnavailable("the stored object is damaged; read it whole to repair it") from None
        if not fast:  # the fast path asked one region: nothing to level
            await self._on_read(self._level(path, found))
        sealed_ad = name_ad(ctag, data_class, ntag)
        try:
            key, content_type = await self._key_and_type(
                customer, winner.meta.dek_id, winner.meta.sealed_name, sealed_ad
            )
            await self.audit.append_async(
                principal=principal.name,
                action="read",
                outcome="allowed",
                customer_tag=ctag,
                data_class=data_class,
                name_tag=ntag,
                purpose=purpose,
            )
        except AuditUnavailable:
            if opened is not None:
                await opened.aclose()
            raise errors.ServiceUnavailable("the audit log cannot be written; reads are refused") from None
        except BaseException:
            if opened is not None:
                await opened.aclose()
            raise
        ad = object_ad(customer, data_class, name, stamp)
        sources = [winner.region] + [r for r in self.order if r != winner.region and found.state(r) == "current"]
        try:
            body = await self._open_body(path, sources, key, ad, winner.meta.dek_id, plan, opened)
        except errors.ServiceUnavailable:
            if not fast:
                raise
            # The near copy failed before any plaintext went out (a repair is journaled): read the
            # name as if the fast path had not been taken, from every region that holds this version.
            found = await self.lookup(path)
            others = [r for r in self.order if found.state(r) == "current" and r != winner.region]
            if found.winner is None or found.winner.meta.version != winner.meta.version or not others:
                raise
            body = await self._open_body(path, others, key, ad, winner.meta.dek_id, plan)
        self.metrics.decrypts.labels(data_class, purpose).inc()
        return Reading(
            version=stamp,
            content_type=content_type,
            size=plan.length if plan is not None else total,
            body=body,
            total=total,
            span=(plan.start, plan.end) if plan is not None else None,
        )

    async def _open_body(
        self,
        path: str,
        sources: list[str],
        key: bytes,
        ad: bytes,
        dek_id: str,
        plan: RangePlan | None = None,
        opened: Reader | None = None,
    ) -> AsyncIterator[bytes]:
        """Decrypting stream (of ``plan``'s range, or the whole) from the first source whose first
        segment verifies; ``opened`` is the first source's body if it is already open."""
        last: BaseException | None = None
        for i, region in enumerate(sources):
            try:
                if i == 0 and opened is not None:
                    plain = decrypt_stream(opened, key, ad)
                else:
                    plain = await self._decrypting(region, path, key, ad, plan)
                first = await anext(plain, None)
            except (RegionError, DecryptionFailed) as e:
                last = e
                await self._on_read(self._repair_from_others(path, region, sources[:i] + sources[i + 1 :], e))
                continue
            return self._rest(path, region, sources, first, self._while_key_lives(plain, dek_id))
        if isinstance(last, RegionUnavailable) or isinstance(last, RegionNotFound):
            raise errors.ServiceUnavailable("no region could serve the object")
        raise errors.ServiceUnavailable("every copy of the object failed its integrity check")

    async def _decrypting(
        self, region: str, path: str, key: bytes, ad: bytes, plan: RangePlan | None
    ) -> AsyncIterator[bytes]:
        """One region's copy, decrypted as it streams; for a range only the header and the segments
        that hold it are fetched (both at once), each segment authenticated by its tag."""
        store = self.regions[region]
        if plan is None:
            _, ciphertext = await store.get(path)
            return decrypt_stream(ciphertext, key, ad)
        (h0, h1), (s0, s1) = plan.header_range, plan.segments_range
        header, segments = await asyncio.gather(
            store.get(path, byte_range=ByteRange(h0, h1 - 1)),
            store.get(path, byte_range=ByteRange(s0, s1 - 1)),
            return_exceptions=True,
        )
        for got in (header, segments):
            if isinstance(got, BaseException):
                for other in (header, segments):
                    if not isinstance(other, BaseException):
                        await other[1].aclose()
                raise got
        assert not isinstance(header, BaseException) and not isinstance(segments, BaseException)
        head = b"".join([c async for c in header[1]])
        return decrypt_range_stream(plan, head, segments[1], key, ad)

    async def _rest(
        self, path: str, region: str, sources: list[str], first: bytes | None, plain: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for chunk in plain:
                yield chunk
        except (RegionError, DecryptionFailed) as e:
            await self._on_read(self._repair_from_others(path, region, [r for r in sources if r != region], e))
            raise

    async def _while_key_lives(self, plain: AsyncIterator[bytes], dek_id: str) -> AsyncIterator[bytes]:
        """``plain``, cut off (the connection aborted: never a clean short body) if the key is
        destroyed while it streams: a read that began before an erasure stops within
        ``KEY_RECHECK`` seconds of it, on whichever node it runs."""
        checked = time.monotonic()
        async for chunk in plain:
            if time.monotonic() - checked > KEY_RECHECK:
                try:
                    destroyed = await asyncio.to_thread(self.keys.is_destroyed, dek_id)
                except KeyringError:
                    destroyed = True  # cannot tell: fail closed
                if destroyed:
                    raise errors.Gone("this customer's data was erased during the read")
                checked = time.monotonic()
            yield chunk

    async def _repair_from_others(self, path: str, bad: str, others: list[str], error: BaseException) -> None:
        # No other source answered this look-up (down, say): repair from it anyway. The row waits in the
        # journal until it answers, and copy_newest never puts an older version over a newer one.
        others = others or [r for r in self.order if r != bad]
        if others and not isinstance(error, RegionUnavailable):
            await self._journal("repair", path, others[0], bad)
