"""The read path: authorize and audit, then stream the winning replica, decrypted.

Authorize → look the name up in both regions (:mod:`.lookup`: the highest
version wins; tombstone → 404, past retention → 410) → audit record written
(fail closed: no record, no plaintext) → get from the winning region,
decrypt as it streams. A region that misses the object, holds an older
version, or fails its digest or GCM check gets a journal row to bring it
level, and the read moves to the other region if no plaintext was sent yet.
Once plaintext is flowing, a later failure aborts the response: the client
sees a broken transfer, never a clean short body.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keys import AuditUnavailable, KeyringError, Principal
from keys.stream import DecryptionFailed, decrypt_stream, object_ad
from keys.tags import name_ad, open_name
from regions import NotFound as RegionNotFound
from regions import RegionError
from regions import Unavailable as RegionUnavailable
from replicator import errors
from replicator.layout import ObjectPath
from replicator.paths.base import plaintext_size
from replicator.paths.lookup import LookupPath
from replicator.paths.names import check_customer, check_object_name

_PURPOSE = re.compile(r"[a-z][a-z0-9_-]{0,63}")


@dataclass
class Reading:
    version: str
    content_type: str
    size: int
    body: AsyncIterator[bytes]


# How often a streaming read asks whether its key still lives (a store query for a cluster).
KEY_RECHECK = 0.1


class ReadPath(LookupPath):
    async def open_read(
        self, principal: Principal | None, customer: str, data_class: str, name: str, purpose: str | None
    ) -> Reading:
        check_customer(customer)
        check_object_name(name)
        self._class(data_class)
        if not purpose:
            raise errors.BadRequest("the X-Purpose header is required to read")
        if not _PURPOSE.fullmatch(purpose):
            raise errors.BadRequest("X-Purpose must be a purpose name such as 'service'")
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
        found, winner = await self._live(customer, data_class, path)
        await self._on_read(self._level(path, found))
        key = await self._dek(winner.meta.dek_id)
        try:
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
            raise errors.ServiceUnavailable("the audit log cannot be written; reads are refused") from None
        _, content_type = open_name(key, winner.meta.sealed_name, name_ad(ctag, data_class, ntag))
        ad = object_ad(customer, data_class, name, str(winner.meta.version))
        sources = [winner.region] + [r for r in self.order if r != winner.region and found.state(r) == "current"]
        body = await self._open_body(path, sources, key, ad, winner.meta.dek_id)
        self.metrics.decrypts.labels(data_class, purpose).inc()
        return Reading(
            version=str(winner.meta.version),
            content_type=content_type,
            size=plaintext_size(winner.info.size, winner.meta.dek_id),
            body=body,
        )

    async def _open_body(
        self, path: str, sources: list[str], key: bytes, ad: bytes, dek_id: str
    ) -> AsyncIterator[bytes]:
        """Decrypting stream from the first source whose first segment verifies."""
        last: BaseException | None = None
        for i, region in enumerate(sources):
            try:
                _, ciphertext = await self.regions[region].get(path)
                plain = decrypt_stream(ciphertext, key, ad)
                first = await anext(plain, None)
            except (RegionError, DecryptionFailed) as e:
                last = e
                await self._on_read(self._repair_from_others(path, region, sources[:i] + sources[i + 1 :], e))
                continue
            return self._rest(path, region, sources, first, self._while_key_lives(plain, dek_id))
        if isinstance(last, RegionUnavailable) or isinstance(last, RegionNotFound):
            raise errors.ServiceUnavailable("no region could serve the object")
        raise errors.ServiceUnavailable("every copy of the object failed its integrity check")

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
