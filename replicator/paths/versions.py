"""Kept versions: what a write or a delete keeps of the object it supersedes, and looking them up.

Theory of operation
-------------------
A class with ``keep_versions_days > 0`` keeps every superseded state of an
object (an older write, or a delete's tombstone: a delete marker) for that
many days, as S3 versioning keeps noncurrent versions. Before a write or a
delete replaces a name, under the name's lock, each region copies the
replica it holds to ``<object path>/<version>``
(:class:`~replicator.layout.VersionPath`) in that same region, with the
replica's own metadata plus ``sup``, the time it was superseded; ciphertext
only, nothing is decrypted (the version stays in its associated data, so
the kept copy decrypts as it did). A region that could not keep it gets a
journal row copying the kept version from one that did; if no region could,
the write is refused (503) rather than lose the only restorable copy.

A small write (a body held in memory, so a put can be retried) does not
look first: each region is asked to create the name (``if_none_match``,
free on every store); only when one already holds it is the name looked
up, kept and then replaced (:meth:`VersionsPath._put_small_keeping`), so a
create costs what it cost before versions. That look-up GETs rather than
HEADs: a replica it is about to keep comes with its bytes (up to
``small_body``), so keeping it is one PUT, and an overwrite costs each
region four requests one after another, not five (docs/performance.md).

A kept version is an ordinary object to replication: the workers copy it,
the reconciler repairs it, expires it (:func:`replicator.retention.no_longer_kept`)
and shreds it after an erasure; an erasure's sweep removes it with the rest
of the customer's prefix.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keys import DataClass, Principal
from regions import ObjectInfo, PreconditionFailed, RegionError
from replicator import errors
from replicator.hlc import Version
from replicator.layout import ObjectMeta, ObjectPath, VersionPath, versions_prefix
from replicator.merge import merged
from replicator.paths.base import plaintext_size
from replicator.paths.listing import region_listing
from replicator.paths.lookup import Lookup, LookupPath, Replica
from replicator.paths.names import check_customer, check_object_name
from replicator.replication.copy import keep_replica


@dataclass(frozen=True)
class Found:
    """One version of a name, current or kept: where it is and which replica wins."""

    path: str  # the object's path (current) or the kept version's
    lookup: Lookup
    winner: Replica
    current: bool


def parse_version(text: str, parameter: str) -> str:
    """A version stamp given in a query parameter; 400 naming the parameter otherwise."""
    try:
        return str(Version.parse(text))
    except ValueError:
        raise errors.BadRequest(f"{parameter} must be a version such as 0001732212345678.00000.node-a") from None


def iso_time(ms: int) -> str:
    """RFC 3339 UTC, to the millisecond, as the API's other times."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class VersionsPath(LookupPath):
    async def versions(self, principal: Principal | None, customer: str, data_class: str, name: str) -> dict[str, Any]:
        """``?versions``: every version of ``name`` still kept, newest first, delete markers included."""
        check_customer(customer)
        check_object_name(name)
        self._class(data_class)
        self.authorize(principal, "meta", data_class, customer=customer)
        await self._refuse_if_erased(customer)
        where = ObjectPath.of(self.tagger, customer, data_class, name)
        await self._record(principal, "versions", where.customer_tag, data_class, where.name_tag, refuse="listings")
        versions = await self._list_versions(where)
        if not versions:
            raise errors.Missing("no version of this object is kept")
        return {"versions": versions}

    async def _keep_superseded(self, dc: DataClass, path: str, found: Lookup, regions: list[str] | None = None) -> None:
        """Keep what each region (of ``regions``) holds at ``path`` before a write or delete replaces
        it (module doc)."""
        if dc.keep_versions_days <= 0:
            return
        held = {
            r: rep
            for r, rep in found.replicas.items()
            if rep is not None and not rep.meta.kept and (regions is None or r in regions)
        }
        if not held:
            return
        superseded = self.now_ms()
        results = await asyncio.gather(
            *(self._keep_one(r, path, rep, superseded) for r, rep in held.items()), return_exceptions=True
        )
        kept: dict[str, list[str]] = {}  # version -> regions that kept it
        for (region, replica), result in zip(held.items(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, RegionError):
                    raise result
                continue
            kept.setdefault(str(replica.meta.version), []).append(region)
        newest = max(rep.meta.version for rep in held.values())
        if str(newest) not in kept:
            raise errors.ServiceUnavailable("the version this write replaces could not be kept; retry the request")
        await self._spread_kept(path, kept)

    async def _spread_kept(self, path: str, kept: dict[str, list[str]]) -> None:
        """Journal a copy of each kept version to every region that did not keep it itself."""
        for version, regions in kept.items():
            for region in self.order:
                if region not in regions:
                    await self._journal("copy", f"{path}/{version}", regions[0], region, version)

    async def _put_small_keeping(self, dc: DataClass, path: str, body: bytes, meta: dict[str, str]) -> list[Any]:
        """Put a small write of a class that keeps versions: each region is asked to create the name;
        where it exists, what each region holds is kept (:meth:`_keep_superseded`) and then replaced.
        Outcomes as :meth:`_put_all` gives them, in region order."""
        outcomes = await self._put_all(
            path, body, meta, put=lambda r: self.regions[r].put(path, body, meta, if_none_match=True)
        )
        held = [r for r, o in zip(self.order, outcomes, strict=True) if isinstance(o, PreconditionFailed)]
        if not held:
            return outcomes
        # Only the regions that held the name: the others hold this very write now.
        await self._keep_superseded(dc, path, await self.lookup(path, with_bodies=True), regions=held)
        again = dict(zip(held, await self._put_all(path, body, meta, regions=held), strict=True))
        return [again.get(r, o) for r, o in zip(self.order, outcomes, strict=True)]

    async def _keep_one(self, region: str, path: str, replica: Replica, superseded: int) -> ObjectInfo:
        return await keep_replica(self.regions[region], path, replica.info, superseded, body=replica.body)

    async def _find_version(self, customer: str, data_class: str, path: str, version: str) -> Found:
        """Version ``version`` of the object at ``path``, current or kept: 404 if no such version
        is kept, 410 if erased or past what its class keeps."""
        await self._refuse_if_erased(customer)
        found = await self.lookup(path)
        current = found.winner
        if current is not None and str(current.meta.version) == version:
            if self.expired(current.meta):
                raise errors.Gone(f"the object is past its class's retention ({data_class})")
            return Found(path, found, current, True)
        kept_path = f"{path}/{version}"
        kept = await self.lookup(kept_path)
        if kept.winner is None:
            if len(kept.failures) == len(self.order):
                raise errors.ServiceUnavailable("no region answered")
            raise errors.Missing(f"no version {version} of this object is kept")
        if self.no_longer_kept(kept.winner.meta):
            raise errors.Gone(f"version {version} is past what its class keeps ({data_class})")
        return Found(kept_path, kept, kept.winner, False)

    async def _list_versions(self, where: ObjectPath) -> list[dict[str, Any]]:
        """Every version still kept, the current one first, then newest first (delete markers too)."""
        path = str(where)
        found = await self.lookup(path)
        down: list[str] = []
        a, b = (region_listing(self.regions[r], versions_prefix(where), down) for r in self.order)
        versions: dict[str, ObjectMeta] = {}
        sizes: dict[str, int] = {}
        async for name, x, y in merged(a, b):
            info = x if x is not None else y
            assert info is not None
            try:
                VersionPath.parse(name)
                meta = ObjectMeta.of(info)
            except ValueError:
                continue  # not ours
            if not self.no_longer_kept(meta):
                versions[str(meta.version)], sizes[str(meta.version)] = meta, info.size
        if len(down) == len(self.order) and found.winner is None:
            raise errors.ServiceUnavailable("no region could list the versions")
        if found.winner is not None and not self.expired(found.winner.meta):
            w = found.winner
            versions[str(w.meta.version)], sizes[str(w.meta.version)] = w.meta, w.info.size
        return [
            {
                "version": v,
                "size": 0 if m.tombstone else plaintext_size(sizes[v], m.dek_id),
                "deleted": m.tombstone,
                "written": iso_time(m.written_ms),
                "current": found.winner is not None and v == str(found.winner.meta.version),
            }
            for v, m in sorted(versions.items(), reverse=True)
        ]
