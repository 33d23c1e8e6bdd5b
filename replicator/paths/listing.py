"""The list path: one customer's live objects of one class, names decrypted, paged.

Both regions' listings are merge-joined (:func:`replicator.merge.merged`, in
byte order of the path, constant memory); for each name the highest version
wins, tombstones and expired objects are left out, and a region that is
down is read as an empty listing while the other answers. The cursor is the
last path returned: the regions cannot start a listing after a name, so the
merge skips up to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from keys import Principal
from keys.tags import name_ad, open_name
from regions import ObjectInfo, Region, RegionError
from replicator import errors
from replicator.layout import ObjectMeta, ObjectPath, class_prefix
from replicator.merge import merged
from replicator.paths.base import plaintext_size
from replicator.paths.lookup import LookupPath
from replicator.paths.names import check_customer


class ListPath(LookupPath):
    async def list(
        self,
        principal: Principal | None,
        customer: str,
        data_class: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        check_customer(customer)
        self._class(data_class)
        self.authorize(principal, "meta", data_class)
        if not 1 <= limit <= 1000:
            raise errors.BadRequest("limit must be between 1 and 1000")
        await self._refuse_if_erased(customer)
        ctag = self.tagger.customer_tag(customer)
        prefix = class_prefix(ctag, data_class)
        if cursor is not None and not (cursor.startswith(prefix) and len(cursor) <= len(prefix) + 64):
            raise errors.BadRequest("cursor does not belong to this listing")
        down: list[str] = []
        a, b = (region_listing(self.regions[r], prefix, down) for r in self.order)
        objects: list[dict[str, Any]] = []
        last: str | None = None
        keys: dict[str, bytes] = {}
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
            assert info is not None  # best came from x or y
            real, _ = open_name(
                keys[best.dek_id], best.sealed_name, name_ad(ctag, data_class, ObjectPath.parse(path).name_tag)
            )
            objects.append(
                {
                    "name": real,
                    "class": data_class,
                    "version": str(best.version),
                    "size": plaintext_size(info.size, best.dek_id),
                }
            )
            last = path
        if len(down) == len(self.order):
            raise errors.ServiceUnavailable("no region could list the objects")
        return {"objects": objects, "cursor": None}


async def region_listing(region: Region, prefix: str, down: list[str]) -> AsyncIterator[ObjectInfo]:
    """A region's listing; if the region is down, an empty one (the other still answers)."""
    try:
        async for info in region.list(prefix):
            yield info
    except RegionError:
        down.append(region.name)
