"""The list path: one customer's live objects, of one class or every class the caller may see.

Names are decrypted under the customer's name key (:mod:`keys.tags`), never a content key: a
``meta:`` scope touches no DEK. Every listing is audited (one record per class, before any name is
opened; no record, no listing). An object written before name keys existed carries a legacy seal
that only its DEK opens: such a listing opens it with the DEK, and says so, once per class and
listing (an audit record ``list-legacy-names`` and ``replicator_legacy_name_opens_total``).
Answers are paged.

Both regions' listings are merge-joined (:func:`replicator.merge.merged`, in
byte order of the path, constant memory); for each name the highest version
wins, tombstones and expired objects are left out, and a region that is
down is read as an empty listing while the other answers. Without a class,
the classes the caller may see (``meta:<class>``) are listed one after the
other in name order. The cursor is the last path returned (its class
included): the regions cannot start a listing after a name, so the merge
skips up to it. Kept versions (``replicator.layout.VersionPath``) are not
listed here: ``?versions`` lists them per object.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any

from keys import Principal
from keys.tags import NAME_KEY_SEAL, name_ad, open_name, sealed_version
from regions import ObjectInfo, Region, RegionError
from replicator import errors
from replicator.layout import ObjectMeta, ObjectPath, class_prefix, is_kept_version
from replicator.merge import merged
from replicator.paths.base import plaintext_size
from replicator.paths.lookup import LookupPath
from replicator.paths.names import check_customer


class ListPath(LookupPath):
    async def list(
        self,
        principal: Principal | None,
        customer: str,
        data_class: str | None,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """One class's live objects, or (``data_class`` None) those of every class the caller may see."""
        check_customer(customer)
        if data_class is not None:
            self._class(data_class)
            self.authorize(principal, "meta", data_class, customer=customer)
            classes = [data_class]
        else:
            classes = [c for c in sorted(self.policy.classes) if self.policy.authorize(principal, "meta", c).allowed]
            if not classes:
                self.authorize(principal, "meta", None, customer=customer)  # 403 naming what is missing
        if not 1 <= limit <= 1000:
            raise errors.BadRequest("limit must be between 1 and 1000")
        await self._refuse_if_erased(customer)
        ctag = self.tagger.customer_tag(customer)
        # Who listed which customer's names, class by class (the names are decrypted).
        await asyncio.gather(*(self._record(principal, "list", ctag, c, refuse="listings") for c in classes))
        if cursor is not None:
            owner = next((c for c in classes if cursor.startswith(class_prefix(ctag, c))), None)
            if owner is None or len(cursor) > len(class_prefix(ctag, owner)) + 64:
                raise errors.BadRequest("cursor does not belong to this listing")
            classes = classes[classes.index(owner) :]
        objects: list[dict[str, Any]] = []
        keys: dict[str, bytes] = {}
        for cls in classes:
            last = await self._list_class(principal, ctag, cls, cursor, limit, objects, keys)
            if last is not None:
                return {"objects": objects, "cursor": last}
        return {"objects": objects, "cursor": None}

    async def _list_class(
        self,
        principal: Principal | None,
        ctag: str,
        data_class: str,
        cursor: str | None,
        limit: int,
        objects: builtins.list[dict[str, Any]],  # the method list shadows the builtin here
        keys: dict[str, bytes],  # name keys by DEK id ("legacy:" + DEK id: a DEK, for legacy seals)
    ) -> str | None:
        """Append ``data_class``'s live objects after ``cursor`` to ``objects``; the cursor to go on
        from when ``limit`` is reached first, else None."""
        down: list[str] = []
        legacy_recorded = False
        a, b = (region_listing(self.regions[r], class_prefix(ctag, data_class), down) for r in self.order)
        last: str | None = None
        async for path, x, y in merged(a, b):
            if is_kept_version(path):
                continue  # listed per object by ?versions
            if cursor is not None and path.encode() <= cursor.encode():
                continue  # the regions cannot start a listing after a name: skip up to the cursor
            best = max((ObjectMeta.of(i) for i in (x, y) if i is not None), key=lambda m: m.version)
            if best.tombstone or self.expired(best):
                continue
            if len(objects) == limit:
                return last
            if sealed_version(best.sealed_name) == NAME_KEY_SEAL:
                key_id = best.dek_id
                if key_id not in keys:
                    keys[key_id] = await self._name_key(best.dek_id)
            else:
                key_id = "legacy:" + best.dek_id
                if not legacy_recorded:  # before the first content key is fetched; no record, no listing
                    await self._record(principal, "list-legacy-names", ctag, data_class, refuse="listings")
                    legacy_recorded = True
                self.metrics.legacy_name_opens.labels(data_class).inc()
                if key_id not in keys:
                    keys[key_id] = await self._dek(best.dek_id)
            info = x if x is not None and ObjectMeta.of(x).version == best.version else y
            assert info is not None  # best came from x or y
            real, _ = open_name(
                keys[key_id], best.sealed_name, name_ad(ctag, data_class, ObjectPath.parse(path).name_tag)
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
        return None


async def region_listing(region: Region, prefix: str, down: list[str]) -> AsyncIterator[ObjectInfo]:
    """A region's listing; if the region is down, an empty one (the other still answers)."""
    try:
        async for info in region.list(prefix):
            yield info
    except RegionError:
        down.append(region.name)
