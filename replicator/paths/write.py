"""The write path: check, encrypt, put to both regions at once, acknowledge what is durable.

SIN check and size limit on the plaintext as it streams (:class:`Checked`),
encrypt, then put to both regions at once (:class:`~replicator.paths.fanout.FanOut`).
A region put is atomic, and the SIN and size checks fail the stream *before*
its end, so a refused write leaves nothing in either region. Acknowledged
``complete`` when both regions hold it; ``degraded`` when one does and a
journal row that will copy it to the other is durable; 503 when none does.
Small bodies (``content_length`` ≤ ``small_body``) are buffered and put from
bytes, so the region drivers may retry them. The write holds the name's lock
(:class:`~replicator.replication.NameLocks`), so a copy never overwrites it
with an older version.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from keys import DataClass, Principal
from keys.sin_containers import BodyScanner, ScanLimitExceeded, ScanLimits, Unscannable
from keys.stream import encrypt_bytes, encrypt_stream, object_ad
from keys.tags import name_ad, seal_name
from regions import ObjectInfo, Region, RegionError
from replicator import errors
from replicator.layout import ObjectMeta, ObjectPath
from replicator.paths.fanout import FanOut
from replicator.paths.names import check_customer, check_object_name
from replicator.paths.versions import VersionsPath

log = logging.getLogger("replicator.paths.write")
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


@dataclass(frozen=True)
class WriteResult:
    version: str
    size: int
    replication: str  # "complete" | "degraded"
    regions: dict[str, str]  # region -> "stored" | "pending"


class WritePath(VersionsPath):
    async def put(
        self,
        principal: Principal | None,
        customer: str,
        data_class: str,
        name: str,
        body: AsyncIterator[bytes],
        *,
        content_type: str = "application/octet-stream",
        content_length: int | None = None,
        if_none_match: bool = False,
        if_match: tuple[str, ...] | None = None,
    ) -> WriteResult:
        check_customer(customer)
        check_object_name(name)
        dc = self._class(data_class)
        self.authorize(principal, "write", data_class, customer=customer)
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise errors.BadRequest("Content-Type must be printable ASCII, at most 255 characters")
        if content_length is not None and content_length > self.max_object_bytes:
            raise errors.TooLarge(f"body of {content_length} bytes is over the limit of {self.max_object_bytes} bytes")
        where = ObjectPath.of(self.tagger, customer, data_class, name)
        await self._record(principal, "write", where.customer_tag, data_class, where.name_tag, refuse="writes")
        return await self._write(
            dc,
            customer,
            name,
            body,
            content_type=content_type,
            content_length=content_length,
            if_none_match=if_none_match,
            if_match=if_match,
            where=where,
        )

    async def _write(
        self,
        dc: DataClass,
        customer: str,
        name: str,
        body: AsyncIterator[bytes],
        *,
        content_type: str,
        content_length: int | None,
        if_none_match: bool = False,
        if_match: tuple[str, ...] | None = None,
        where: ObjectPath | None = None,
    ) -> WriteResult:
        """Store ``body`` as the new current version of ``name`` (checked and authorized by the caller;
        ``where``: its path, when the caller has it already)."""
        data_class = dc.name
        dek = await self._dek_for_write(customer)
        where = where or ObjectPath.of(self.tagger, customer, data_class, name)
        path = str(where)
        small = content_length is not None and content_length <= self.small_body
        async with self.locks.hold(path) as held:
            if if_none_match or if_match is not None or (dc.keep_versions_days > 0 and not small):
                found = await self.lookup(path)
                if (if_none_match or if_match is not None) and found.failures:
                    raise errors.ServiceUnavailable("cannot check the condition: a region did not answer")
                self._check_conditions(found, if_none_match=if_none_match, if_match=if_match)
                await self._keep_superseded(dc, path, found)
            version = self.next_version(held)
            meta = ObjectMeta(
                version=version,
                data_class=data_class,
                written_ms=self.now_ms(),
                dek_id=dek.dek_id,
                sealed_name=seal_name(
                    dek.name_key, name, content_type, name_ad(where.customer_tag, data_class, where.name_tag)
                ),
            )
            ad = object_ad(customer, data_class, name, str(version))
            checked = Checked(
                body,
                self.max_object_bytes,
                scan_sin=not dc.sin_allowed,
                scan_limits=self.scan_limits,
                refuse_unscannable=dc.unscannable == "refuse",
            )
            if small:
                plaintext = b"".join([c async for c in checked])
                cipher = encrypt_bytes(plaintext, dek.key, dek.dek_id, ad)
                if dc.keep_versions_days > 0 and not (if_none_match or if_match is not None):
                    outcomes = await self._put_small_keeping(dc, path, cipher, meta.to_meta())
                else:
                    outcomes = await self._put_all(path, cipher, meta.to_meta())
            else:
                outcomes = await self._put_streaming(
                    path, encrypt_stream(checked, dek.key, dek.dek_id, ad), meta.to_meta()
                )
            stored = [r for r, o in zip(self.order, outcomes, strict=True) if not isinstance(o, BaseException)]
            failed = {r: o for r, o in zip(self.order, outcomes, strict=True) if isinstance(o, BaseException)}
            for o in failed.values():
                if not isinstance(o, RegionError):
                    raise o
            if not stored:
                raise errors.ServiceUnavailable(
                    "no region stored the object: " + "; ".join(f"{r}: {type(e).__name__}" for r, e in failed.items())
                )
            for region in failed:
                await self._journal("copy", path, stored[0], region, str(version), _stored_size(outcomes))
            if failed:
                self.metrics.degraded_writes.inc()
        self.metrics.http_bytes.labels("in").inc(checked.size)
        if checked.unscanned:
            self.metrics.sin_unscanned.labels(data_class).inc(checked.unscanned)
            log.info("stored with parts not scanned for a SIN", extra={"class": data_class, "parts": checked.unscanned})
        return WriteResult(
            version=str(version),
            size=checked.size,
            replication="degraded" if failed else "complete",
            regions={r: ("pending" if r in failed else "stored") for r in self.order},
        )

    async def _put_streaming(self, path: str, ciphertext: AsyncIterator[bytes], meta: dict[str, str]) -> list[Any]:
        fan = FanOut(ciphertext, len(self.order))

        async def put(i: int, region: Region) -> Any:
            try:
                return await region.put(path, fan.consumer(i), meta)
            finally:
                fan.release(i)

        fan.start()
        puts = [put(i, self.regions[r]) for i, r in enumerate(self.order)]
        outcomes = await fan.gather(self.order, puts, self.no_progress_timeout)
        try:
            await fan.wait()
        except RegionError:
            pass  # a region failing is reported per region below
        return outcomes


class Checked:
    """The plaintext stream as it arrives: counts it, enforces the size limit, looks for a SIN.

    The SIN check (:class:`~keys.sin_containers.BodyScanner`) reads the bytes as they are and
    what gzip, zip, PDF and UTF-16 bodies hold; a bomb (``scan_limits``) is 413 or 422 naming
    the limit, and what cannot be scanned is 422 unless the class accepts it. Every check
    raises from inside the stream, before its end, so no region put can complete with a
    refused body.
    """

    def __init__(
        self,
        body: AsyncIterator[bytes],
        limit: int,
        *,
        scan_sin: bool,
        scan_limits: ScanLimits | None = None,
        refuse_unscannable: bool = True,
    ) -> None:
        self._body = body
        self._limit = limit
        self._scanner = BodyScanner(scan_limits, refuse_unscannable=refuse_unscannable) if scan_sin else None
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            self.size += len(chunk)
            if self.size > self._limit:
                raise errors.TooLarge(f"body is over the limit of {self._limit} bytes")
            if self._scanner is not None and await self._scan(chunk):
                raise errors.SinRefused(_SIN)
            yield chunk
        if self._scanner is not None and await self._scan(None):
            raise errors.SinRefused(_SIN)

    @property
    def unscanned(self) -> int:
        """Parts the SIN check skipped as unscannable (a class that accepts them)."""
        return self._scanner.unscanned[0] if self._scanner is not None else 0

    async def _scan(self, chunk: bytes | None) -> bool:
        """Whether a SIN is certain (``None``: the end of the body), the container refusals as errors."""
        assert self._scanner is not None
        try:
            return self._scanner.finish() if chunk is None else await self._scanner.afeed(chunk)
        except ScanLimitExceeded as e:
            if e.limit == "max_depth":
                raise errors.SinRefused(e.message) from None
            raise errors.TooLarge(e.message) from None
        except Unscannable as e:
            raise errors.SinRefused(
                f"part of the body cannot be scanned for a SIN ({e.reason}); this class refuses what it "
                'cannot scan (its policy sets unscannable = "refuse")'
            ) from None


_SIN = "the body holds what looks like a Canadian SIN; this class may not store one"


def _stored_size(outcomes: list[Any]) -> int:
    """The stored (ciphertext) size a region reported, for the journal's pending bytes."""
    return next((o.size for o in outcomes if isinstance(o, ObjectInfo)), 0)
