"""Account erasure: destroy the customer's key at once, then delete every object in both regions.

Destroying the DEK (crypto-shredding) makes every copy unreadable the moment
the call returns, backups included. The erasure also goes into the erasure
ledger in both regions (:mod:`.ledger`) before the call returns (a region
that misses it gets it from the sweep, which does not finish until both
hold it), so a restored backup of the key records cannot undo it. The sweep that follows removes the
ciphertext from both regions; its receipt (in the journal database) shows per
region how many objects were deleted and how many remain, and a restart
resumes it. A finished sweep is also an audit record (``erase.swept``, the
customer's tag, ``deleted:<region>-<n>:…``: what it removed, per region).
A sweep is repeated until both regions list nothing under the customer's tag,
so an object a replication worker copied back during the sweep is caught by
the next pass. In a region that keeps large objects in
segments (Swift), a pass that leaves nothing listed also deletes the
customer's orphan segments (of replaced large objects, or uploads cut off),
whatever their age: nothing may be written under the tag any more.

The receipt names the erasure, the customer's tag (never the id), the state,
when the key was destroyed, per region what was deleted and remains, and when
it was issued; with ``erasure_receipt_key`` configured it is signed (Ed25519,
:mod:`keys.receipts`) and ``replicator erase verify-receipt`` checks it offline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from keys import AuditLog, AuditUnavailable, KeyringError, Principal
from keys.provider import KeyProvider
from regions import Region, RegionError
from replicator import errors
from replicator.journal import Erasure, ErasureLog
from replicator.layout import customer_prefix
from replicator.paths.base import PathsBase
from replicator.paths.ledger import ErasureLedger
from replicator.paths.names import check_customer

log = logging.getLogger("replicator.paths.erasure")


class Eraser:
    def __init__(
        self,
        regions: Mapping[str, Region],
        journal: ErasureLog,
        keys: KeyProvider,
        *,
        retry_wait: float = 5.0,
        concurrency: int = 8,
        audit: AuditLog | None = None,
    ):
        self.regions = regions
        self.audit = audit  # a finished sweep's record goes here
        self.journal = journal
        self.ledger = ErasureLedger(regions, keys)
        self.keys = keys
        self.retry_wait = retry_wait
        self.concurrency = concurrency
        self._tasks: set[asyncio.Task] = set()

    def start(self, erasure: Erasure) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self.run(erasure))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def resume(self) -> None:
        for erasure in await self.journal.running_erasures():
            self.start(erasure)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self, erasure: Erasure) -> None:
        prefix = customer_prefix(erasure.customer_tag)
        deleted = {r: max(0, erasure.regions.get(r, {}).get("deleted", 0)) for r in self.regions}
        unledgered = True  # until every region holds the erasure's ledger entry
        while True:
            if unledgered:
                tomb = await asyncio.to_thread(self.keys.tombstone, erasure.customer_tag)
                unledgered = tomb is not None and bool(await self.ledger.record(erasure.customer_tag, tomb))
            results = await asyncio.gather(
                *(self._sweep(erasure.id, r, prefix, deleted) for r in self.regions), return_exceptions=True
            )
            if not unledgered and all(result == 0 for result in results):
                await self.journal.finish_erasure(erasure.id)
                log.info("erasure finished", extra={"erasure": erasure.id, "deleted": deleted})
                await self._record(erasure.customer_tag, deleted)
                return
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, RegionError):
                    raise result
            await asyncio.sleep(self.retry_wait)

    async def _record(self, customer_tag: str, deleted: dict[str, int]) -> None:
        """What the sweep removed, per region, in the audit log (best effort: the erasure is done either way)."""
        if self.audit is None:
            return
        for outcome in counts_outcomes("deleted", deleted):
            try:
                await self.audit.append_async(
                    principal="eraser", action="erase.swept", outcome=outcome, customer_tag=customer_tag
                )
            except (AuditUnavailable, ValueError):
                log.warning("erasure sweep's audit record not written", extra={"outcome": outcome})

    async def _sweep(self, erasure_id: str, region_name: str, prefix: str, deleted: dict[str, int]) -> int:
        """Delete what the region lists under ``prefix``; return how many objects remain after."""
        region = self.regions[region_name]
        sem = asyncio.Semaphore(self.concurrency)

        async def delete(name: str) -> None:
            async with sem:
                await region.delete(name)
                deleted[region_name] += 1

        batch: list[str] = []
        async for info in region.list(prefix):
            batch.append(info.name)
            if len(batch) == 100:
                await asyncio.gather(*(delete(n) for n in batch))
                batch.clear()
                await self.journal.update_erasure(erasure_id, region_name, deleted=deleted[region_name], remaining=-1)
        await asyncio.gather(*(delete(n) for n in batch))
        remaining = 0
        async for _ in region.list(prefix):
            remaining += 1
        sweep = region.features.sweep_segments
        if remaining == 0 and sweep is not None:
            await sweep(key_prefix=prefix, older_than=timedelta(0))
        await self.journal.update_erasure(erasure_id, region_name, deleted=deleted[region_name], remaining=remaining)
        return remaining


class Sweeper(Protocol):
    """Who sweeps the regions once the key is gone: the service's :class:`Eraser`, or the CLI's
    foreground wrapper around one."""

    def start(self, erasure: Erasure) -> asyncio.Task[None]: ...


class ErasurePath(PathsBase):
    async def erase(self, principal: Principal | None, customer: str, eraser: Sweeper) -> dict[str, Any]:
        """Crypto-shred the customer's key now, then sweep both regions in the background."""
        check_customer(customer)
        self.authorize(principal, "erase", customer=customer)
        ctag = self.tagger.customer_tag(customer)
        try:
            destroyed_at = await asyncio.to_thread(self.keys.destroy, customer)
            tomb = await asyncio.to_thread(self.keys.tombstone, ctag)
        except KeyringError as e:  # the key store is away: nothing was erased, say so
            raise errors.ServiceUnavailable(f"the key store cannot be reached; nothing was erased ({e})") from None
        if tomb is not None:  # written now so a restored backup cannot undo it; the sweep retries a missed region
            await ErasureLedger(self.regions, self.keys).record(ctag, tomb)
        # An erasure is the customer's right: it is not refused for want of an audit line.
        await self._record(principal, "erase", ctag)
        erasure = await self.journal.create_erasure(ctag, destroyed_at.isoformat(), list(self.order))
        eraser.start(erasure)
        return {"erasure": erasure.id, "key_destroyed_at": destroyed_at.isoformat()}

    async def erasure(self, principal: Principal | None, erasure_id: str) -> dict[str, Any]:
        self.authorize(principal, "erase")
        erasure = await self.journal.erasure(erasure_id)
        if erasure is None:
            raise errors.Missing("no such erasure")
        receipt = {
            "erasure": erasure.id,
            "customer_tag": erasure.customer_tag,
            "state": erasure.state,
            "key_destroyed_at": erasure.key_destroyed_at,
            "regions": erasure.regions,
            "issued_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        # Signed (keys.receipts) so an auditor can check it offline: `replicator erase verify-receipt`.
        return self.receipt_key.sign(receipt) if self.receipt_key is not None else receipt


def counts_outcomes(word: str, counts: dict[str, int], limit: int = 64) -> list[str]:
    """``counts`` per region as audit outcomes ``<word>:<region>-<n>:…``, as few as fit ``limit`` characters."""
    outcomes: list[str] = []
    for region, n in counts.items():
        part = f":{region}-{n}"
        if outcomes and len(outcomes[-1]) + len(part) <= limit:
            outcomes[-1] += part
        else:
            outcomes.append(word + part)
    return outcomes


def _name(principal: Principal | None) -> str:
    return principal.name if principal else "anonymous"
