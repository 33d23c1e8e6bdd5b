"""Looking a name up in both regions: which replica wins, what to repair, when to wait for a late region.

Theory of operation
-------------------
Every region is asked for the name's head at once (:meth:`LookupPath.lookup`).
Once one has answered, the others get ``straggler_grace`` more seconds
(:mod:`.straggler`); a region still silent then counts as unavailable,
unless it may hold the only newest version: that is so only while the
journal owes an answering region work on this name (or cannot say), and
then the look-up waits for it after all (:func:`wait_for_late`).

A read first tries the near region alone (:meth:`LookupPath.near_lookup`):
it GETs (or HEADs) the preferred region while asking the journal whether
that region is owed any work on the name. Every acknowledged write is in
both regions or has a journal row for the one that missed it, so a
replica in a region the journal owes nothing *is* the newest acknowledged
version: the far region is not asked, and a read costs one request to the
near region. Otherwise (a row is pending, the journal cannot say, the near
region fails or lacks the name) the read looks the name up in both.

The decision itself is pure (:func:`decide`): the highest version among the
replicas wins; a region without the name is ``missing``, one with an older
version ``stale``, one that failed ``unavailable``; metadata we did not
write counts as missing. Every region that answered without the winning
version is owed a copy (:func:`owed_copies`). ``tests/unit/replicator/
test_lookup.py`` holds the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from keys import Principal
from regions import NotFound as RegionNotFound
from regions import ObjectInfo, Reader, Region, RegionError
from replicator import errors
from replicator.journal import JournalError
from replicator.layout import ObjectMeta, ObjectPath
from replicator.paths.base import PathsBase, plaintext_size
from replicator.paths.names import check_customer, check_object_name
from replicator.paths.straggler import cancelled_on_exit, outcome, with_grace

log = logging.getLogger("replicator.paths")


@dataclass(frozen=True)
class Replica:
    """What one region holds for a name."""

    region: str
    info: ObjectInfo
    meta: ObjectMeta
    body: bytes | None = None  # the stored bytes, when a look-up ``with_bodies`` read them


@dataclass
class Lookup:
    """Both regions' answers for one name, and the winner."""

    winner: Replica | None
    replicas: dict[str, Replica | None]  # None: the region does not have it
    failures: dict[str, RegionError] = field(default_factory=dict)

    def state(self, region: str) -> str:
        if region in self.failures:
            return "unavailable"
        replica = self.replicas.get(region)
        if replica is None:
            return "missing"
        return "current" if self.winner and replica.meta.version == self.winner.meta.version else "stale"


@dataclass(frozen=True)
class HeadResult:
    version: str
    size: int
    data_class: str
    replication: str  # "complete" | "pending"
    regions: dict[str, str]  # region -> current | stale | missing | unavailable


# What one region's head gave: its replica, None (not there), or the error it raised
# (RegionError: it failed; ValueError: metadata we did not write).
Answer = Replica | None | BaseException


def decide(order: Sequence[str], answers: Sequence[Answer]) -> Lookup:
    """The look-up of one name from each region's answer, in preference order (pure).

    The highest version wins; on a tie the preferred region's replica does.
    Any error but a RegionError or a ValueError is a bug and is raised."""
    found = Lookup(None, {})
    for region, answer in zip(order, answers, strict=True):
        if isinstance(answer, RegionError):
            found.failures[region] = answer
        elif isinstance(answer, ValueError):  # metadata we did not write: treat as missing
            found.replicas[region] = None
        elif isinstance(answer, BaseException):
            raise answer
        else:
            found.replicas[region] = answer
            if answer is not None and (found.winner is None or answer.meta.version > found.winner.meta.version):
                found.winner = answer
    return found


def owed_copies(order: Sequence[str], found: Lookup) -> list[str]:
    """The regions that answered without the winning version: each is owed a copy (pure)."""
    if found.winner is None:
        return []
    return [r for r in order if found.state(r) in ("missing", "stale")]


def wait_for_late(behind: set[str] | None, answered: set[str]) -> bool:
    """Whether to wait for a region still silent after the grace (pure): yes when the journal owes
    one of the regions that answered work on this name (``behind``), so the late one may hold the
    newest version, or when the journal cannot say (``None``)."""
    return behind is None or bool(behind & answered)


class LookupPath(PathsBase):
    async def lookup(self, path: str, *, with_bodies: bool = False) -> Lookup:
        """Every region's head of ``path``, decided by :func:`decide`; a region that hangs costs
        ``straggler_grace``, not its timeout (see the module doc). ``with_bodies``: a GET instead
        of the HEAD, and a replica of at most ``small_body`` bytes comes with its (verified) bytes,
        for a caller about to read them anyway (keeping a version): one round trip, not two."""

        async def head(region: Region) -> Replica | None:
            try:
                if not with_bodies:
                    info = await region.head(path)
                    return Replica(region.name, info, ObjectMeta.of(info))
                info, reader = await region.get(path)
                body: bytes | None = None
                try:
                    meta = ObjectMeta.of(info)
                    if info.size <= self.small_body:
                        body = b"".join([c async for c in reader])
                    else:
                        await anext(reader, None)  # started, so closing it releases the connection now
                except RegionError:
                    body = None  # whoever reads it next meets the same error and decides
                finally:
                    await reader.aclose()
                return Replica(region.name, info, meta, body)
            except RegionNotFound:
                return None

        heads = {r: asyncio.ensure_future(head(self.regions[r])) for r in self.order}
        async with cancelled_on_exit(heads):
            answered = await with_grace(heads, self.straggler_grace)
            if any(not h.done() for h in heads.values()) and wait_for_late(await self._behind(path), answered):
                await asyncio.wait(heads.values())
        found = decide(self.order, [outcome(r, heads[r], self.straggler_grace, path) for r in self.order])
        if found.winner is not None:  # our next stamps exceed what we saw, whatever our wall clock says
            self.clock.observe(found.winner.meta.version)
        return found

    async def near_lookup(self, path: str, *, with_body: bool) -> tuple[Lookup, Reader | None] | None:
        """The preferred region's replica of ``path`` when the journal owes that region nothing on
        it (so it is current: module doc), with its body already open if ``with_body``; None when
        that cannot be known, and the caller looks the name up in every region."""
        near = self.order[0]
        region = self.regions[near]

        async def near_copy() -> tuple[ObjectInfo, Reader | None]:
            # A near region that hangs costs the straggler grace, then the full look-up, as there.
            async with asyncio.timeout(self.straggler_grace):
                return await region.get(path) if with_body else (await region.head(path), None)

        copy = asyncio.ensure_future(near_copy())  # and the journal asked meanwhile, in this task
        behind: set[str] | Exception | None
        try:
            behind = await self._behind(path)
        except asyncio.CancelledError:
            copy.cancel()
            raise
        except Exception as e:  # a bug: raised below, once what the copy opened is closed
            behind = e
        try:
            info, reader = await copy
        except (RegionError, TimeoutError):
            if isinstance(behind, Exception):
                raise behind from None
            return None
        replica = None
        if not isinstance(behind, Exception) and behind is not None and near not in behind:
            try:
                replica = Replica(near, info, ObjectMeta.of(info))
            except ValueError:  # metadata we did not write: the full look-up decides
                pass
        if replica is None:
            if reader is not None:
                await reader.aclose()
            if isinstance(behind, Exception):
                raise behind
            return None
        self.clock.observe(replica.meta.version)
        return Lookup(replica, {near: replica}), reader

    async def _behind(self, path: str) -> set[str] | None:
        """The regions the journal owes work on ``path``; None when the journal cannot say."""
        try:
            return set(await self.journal.behind(path))
        except JournalError:
            return None

    def _raise_if_none(self, found: Lookup) -> Replica:
        if found.winner is None:
            if found.failures and len(found.failures) == len(self.order):
                raise errors.ServiceUnavailable(
                    "no region answered: " + "; ".join(f"{r}: {type(e).__name__}" for r, e in found.failures.items())
                )
            raise errors.Missing("no such object")
        return found.winner

    def _check_conditions(
        self, found: Lookup, *, if_none_match: bool = False, if_match: tuple[str, ...] | None = None
    ) -> None:
        """412 unless the current object meets ``If-Match`` (one of these versions, or ``*``: any
        live one) and ``If-None-Match: *`` (none live). Deleted and expired objects do not exist."""
        w = found.winner
        live = w is not None and not w.meta.tombstone and not self.expired(w.meta)
        if if_match is not None:
            if not live:
                raise errors.ConditionFailed("the object does not exist (If-Match)")
            assert w is not None
            if "*" not in if_match and str(w.meta.version) not in if_match:
                raise errors.ConditionFailed("the object's current version is not one that If-Match names")
        if if_none_match and live:
            raise errors.ConditionFailed("the object exists (If-None-Match: *)")

    async def _live(self, customer: str, data_class: str, path: str) -> tuple[Lookup, Replica]:
        """The winning replica of a live object: 410 if erased or expired, 404 if missing or deleted."""
        await self._refuse_if_erased(customer)
        found = await self.lookup(path)
        return found, self._current(found, data_class)

    def _current(self, found: Lookup, data_class: str) -> Replica:
        """The winner, if it is a live object: 404 if missing or deleted, 410 if expired."""
        winner = self._raise_if_none(found)
        if winner.meta.tombstone:
            raise errors.Missing("no such object (deleted)")
        if self.expired(winner.meta):
            raise errors.Gone(f"the object is past its class's retention ({data_class})")
        return winner

    async def _level(self, path: str, found: Lookup) -> None:
        """Journal a copy to every region that answered without the winning version."""
        for region in owed_copies(self.order, found):
            assert found.winner is not None
            winner = found.winner
            await self._journal("copy", path, winner.region, region, str(winner.meta.version), winner.info.size)

    async def _on_read(self, repair: Awaitable[None]) -> None:
        """Repairs a read finds are owed, not promised: with the journal away the read goes on
        (the reconciler finds the same difference tonight)."""
        try:
            await repair
        except errors.ServiceUnavailable:
            log.warning("journal unavailable: a repair found by a read is left to the reconciler")

    async def head(self, principal: Principal | None, customer: str, data_class: str, name: str) -> HeadResult:
        check_customer(customer)
        check_object_name(name)
        self._class(data_class)
        self.authorize(principal, "meta", data_class, customer=customer)
        path = str(ObjectPath.of(self.tagger, customer, data_class, name))
        found, winner = await self._live(customer, data_class, path)
        states = {r: found.state(r) for r in self.order}
        return HeadResult(
            version=str(winner.meta.version),
            size=plaintext_size(winner.info.size, winner.meta.dek_id),
            data_class=data_class,
            replication="complete" if all(s == "current" for s in states.values()) else "pending",
            regions=states,
        )
