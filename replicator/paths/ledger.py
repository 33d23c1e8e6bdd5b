"""The erasure ledger: every erasure kept in both regions, and re-applied to the key records.

A restored backup of the key records (the keyring file, or the key store's
database) would bring back the keys of customers erased since the backup
was taken. So every erasure is also written to each region, as one empty
object whose name says it all (a listing reads the whole ledger, no GET)::

    erasures/<customer tag>/<erasure time, ms, 16 digits>.erased.<DEK id | none>
    erasures/<customer tag>/<time>.reinstated      (a reinstatement, for later ones)

Names hold the customer tag only, like the objects' (no identifier), and
live outside the objects' ``v1/`` root, so neither the reconciler nor an
erasure's sweep touches them.

:meth:`ErasureLedger.reapply` reads every region's ledger (their union: one
region may have missed an event while it was down) and hands each entry to
the key provider (``KeyProvider.reapply``): a DEK an erasure destroyed stays
destroyed, and a customer whose last event is an erasure stays erased.
Nodes run it at start, before they take traffic, and ``replicator health``
runs it; each key it has to destroy again is an audit record.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from keys import AuditLog
from keys.provider import KeyProvider, Tombstone
from regions import Region, RegionError

log = logging.getLogger("replicator.paths.ledger")

LEDGER_PREFIX = "erasures/"
_ENTRY = re.compile(r"erasures/([a-z2-7]{32})/(\d{16})\.(erased\.(dek_[a-z2-7]{26}|none)|reinstated)")
WRITE_TIMEOUT = 10.0


@dataclass(frozen=True, order=True)
class Event:
    """One ledger entry: an erasure (``dek_id`` the key destroyed, if any) or a reinstatement."""

    at_ms: int
    erased: bool
    dek_id: str | None = None

    def name(self, customer_tag: str) -> str:
        what = f"erased.{self.dek_id or 'none'}" if self.erased else "reinstated"
        return f"{LEDGER_PREFIX}{customer_tag}/{self.at_ms:016d}.{what}"

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_ms / 1000, UTC)

    @classmethod
    def of(cls, tomb: Tombstone) -> Event:
        return cls(int(tomb.destroyed_at.timestamp() * 1000), True, tomb.dek_id)


def parse(name: str) -> tuple[str, Event] | None:
    """(customer tag, event) for a ledger object's name; None for anything else."""
    m = _ENTRY.fullmatch(name)
    if m is None:
        return None
    erased = m[3] != "reinstated"
    dek_id = m[4] if erased and m[4] != "none" else None
    return m[1], Event(int(m[2]), erased, dek_id)


class ErasureLedger:
    def __init__(self, regions: Mapping[str, Region], keys: KeyProvider):
        self.regions = regions
        self.keys = keys

    async def record(self, customer_tag: str, tomb: Tombstone) -> list[str]:
        """Write the erasure to every region at once; the regions that did not take it (their
        erasure's sweep writes it again until they do)."""
        name = Event.of(tomb).name(customer_tag)

        async def put(region: Region) -> None:
            await asyncio.wait_for(region.put(name, b"", {}), WRITE_TIMEOUT)

        outcomes = await asyncio.gather(*(put(r) for r in self.regions.values()), return_exceptions=True)
        missed = [n for n, o in zip(self.regions, outcomes, strict=True) if isinstance(o, BaseException)]
        for region_name, outcome in zip(self.regions, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, RegionError | TimeoutError):
                raise outcome
            if isinstance(outcome, BaseException):
                log.warning(
                    "erasure ledger entry not written", extra={"region": region_name, "error": type(outcome).__name__}
                )
        return missed

    async def read(self, timeout: float | None = None) -> tuple[dict[str, list[Event]], list[str]]:
        """Every customer tag's events, oldest first (the union of the regions', listed at once), and
        the regions that could not be listed (within ``timeout`` seconds each, if given)."""

        async def listed(region: Region) -> list[str]:
            return [info.name async for info in region.list(LEDGER_PREFIX)]

        found = await asyncio.gather(
            *(asyncio.wait_for(listed(r), timeout) for r in self.regions.values()), return_exceptions=True
        )
        events: dict[str, set[Event]] = {}
        unread: list[str] = []
        for name, names in zip(self.regions, found, strict=True):
            if isinstance(names, BaseException):
                if not isinstance(names, RegionError | TimeoutError):
                    raise names
                log.warning("erasure ledger unreadable", extra={"region": name, "error": type(names).__name__})
                unread.append(name)
                continue
            for entry in filter(None, map(parse, names)):
                events.setdefault(entry[0], set()).add(entry[1])
        return {tag: sorted(found) for tag, found in events.items()}, unread

    async def reapply(self, timeout: float | None = None) -> Reapplied:
        """Make the key records agree with the ledger; what had to change, per customer tag."""
        ledger, unread = await self.read(timeout)
        if len(unread) == len(self.regions):
            raise LedgerUnavailable(f"no region's erasure ledger could be read ({', '.join(unread)})")
        changed: list[str] = []
        for tag, events in ledger.items():
            for i, event in enumerate(events):
                if not event.erased:
                    continue
                tomb, last = Tombstone(event.at, event.dek_id), i == len(events) - 1
                if await asyncio.to_thread(self.keys.reapply, tag, tomb, still_erased=last) and tag not in changed:
                    changed.append(tag)
        entries = sum(len(e) for e in ledger.values())
        return Reapplied(entries=entries, customers=len(ledger), redestroyed=changed, unread=unread)


@dataclass(frozen=True)
class Reapplied:
    entries: int
    customers: int
    redestroyed: list[str]  # customer tags whose key a restore had brought back
    unread: list[str]  # regions whose ledger could not be read (the other one's was)


class LedgerUnavailable(Exception):
    """Neither region's ledger could be read."""


async def reapply_audited(ledger: ErasureLedger, audit: AuditLog) -> Reapplied:
    """``ledger.reapply()``, with an audit record for every customer whose key it destroyed again."""
    done = await ledger.reapply()
    for tag in done.redestroyed:
        log.warning("erasure re-applied: a restored backup had brought a key back", extra={"customer_tag": tag})
        await audit.append_async(principal="erasure-ledger", action="erase", outcome="reapplied", customer_tag=tag)
    return done


async def reapply_until_read(ledger: ErasureLedger, audit: AuditLog, *, retry_wait: float = 30.0) -> Reapplied:
    """``reapply_audited``, tried again every ``retry_wait`` seconds while no region can be read."""
    while True:
        try:
            return await reapply_audited(ledger, audit)
        except LedgerUnavailable as e:
            log.warning("erasure ledger not re-applied yet", extra={"error": str(e)})
        await asyncio.sleep(retry_wait)
