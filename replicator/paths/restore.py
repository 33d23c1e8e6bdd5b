"""Restore: make a kept version the current object again, as a new version.

Authorize (``restore:<class>``) → find the version, current or kept
(:mod:`.versions`: 404 if not kept, 410 past what its class keeps) → audit
record (fail closed, as a read: the version is decrypted) → decrypt it as it
streams and write it through the write path, so it gets a new version stamp
(the version is in the associated data: a byte copy would not decrypt as
the new one), passes the same checks, and supersedes the current object,
which is itself kept. Restoring a delete marker is a 400: it has no content;
write or restore an older version instead.
"""

from __future__ import annotations

from keys import Principal
from keys.stream import object_ad
from keys.tags import name_ad
from replicator import errors
from replicator.layout import ObjectPath
from replicator.paths.base import plaintext_size
from replicator.paths.names import check_customer, check_object_name
from replicator.paths.read import ReadPath
from replicator.paths.write import WritePath, WriteResult


class RestorePath(ReadPath, WritePath):
    async def restore(
        self, principal: Principal | None, customer: str, data_class: str, name: str, version: str
    ) -> WriteResult:
        check_customer(customer)
        check_object_name(name)
        dc = self._class(data_class)
        self.authorize(principal, "restore", data_class, customer=customer)
        assert principal is not None  # authorized above
        where = ObjectPath.of(self.tagger, customer, data_class, name)
        one = await self._find_version(customer, data_class, str(where), version)
        winner = one.winner
        if winner.meta.tombstone:
            raise errors.BadRequest(f"version {version} is a delete marker; restore a version that has content")
        key = await self._dek(winner.meta.dek_id)
        await self._record(principal, "restore", where.customer_tag, data_class, where.name_tag, refuse="restores")
        sealed_ad = name_ad(where.customer_tag, data_class, where.name_tag)
        _, content_type = await self._open_name(winner.meta.dek_id, winner.meta.sealed_name, sealed_ad, key)
        ad = object_ad(customer, data_class, name, version)
        sources = [winner.region] + [r for r in self.order if r != winner.region and one.lookup.state(r) == "current"]
        body = await self._open_body(one.path, sources, key, ad, winner.meta.dek_id)
        return await self._write(
            dc,
            customer,
            name,
            body,
            content_type=content_type,
            content_length=plaintext_size(winner.info.size, winner.meta.dek_id),
            where=where,
        )
