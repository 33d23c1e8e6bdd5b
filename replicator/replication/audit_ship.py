"""Shipping each node's audit chain to both regions, as Litestream ships a WAL.

Theory of operation. A node's audit log (``keys.audit``) is append-only and
keyed; the local append stays the fail-closed step, and shipping never blocks
it. Every ``audit_ship_interval`` seconds (default 60) the shipper cuts the
records appended since the last **checkpoint** into a sealed **segment** and
puts it in every region, then the checkpoint that ends it (and once more when ``serve`` stops, so a
node taken down on purpose leaves its whole chain there):

* ``audit/<node id>/<segment seq, 12 digits>``: the records' exact lines, so
  the segments, concatenated in name order, are the node's chain itself and
  verify under the audit key like the local file;
* ``audit/<node id>/checkpoint``: JSON ``{segment, seq, offset, link}``: the
  last segment, its last record's seq and link (its MAC), and the byte offset
  in the local log where the next segment starts.

Names hold the node id and counters only, never a customer identifier.
A segment is cut only from records that chain on under the audit key from the
checkpoint's link, so a log edited on disk is not shipped over good copies.
Segments are cut once, from the region that is furthest on (the leader); a
region that missed some (it was down) copies them from the leader before it
takes new ones, so every region holds the same segments under the same names.

An outage shows, never blocks: ``state()`` is the soft readiness check
``audit_shipping`` (``ok``, or what is behind), and two gauges say how many
records are not yet in every region and how old the oldest of them may be
(at most the time since every region last held the whole log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass

from keys import AuditKey, AuditLog
from keys.audit import GENESIS, MAX_LINE
from keys.audit import decode as decode_record
from regions import NotFound, Region, RegionError

log = logging.getLogger(__name__)

PREFIX = "audit/"
MAX_SEGMENT = 8 * 1024 * 1024  # bytes of records in one segment; a long backlog is cut into several


def node_prefix(node_id: str) -> str:
    return f"{PREFIX}{node_id}/"


def segment_name(node_id: str, segment: int) -> str:
    return f"{node_prefix(node_id)}{segment:012d}"


def checkpoint_name(node_id: str) -> str:
    return f"{node_prefix(node_id)}checkpoint"


@dataclass(frozen=True)
class Shipped:
    """A checkpoint: segments 1..``segment`` hold records 1..``seq``, the last with ``link``; the next
    segment starts at byte ``offset`` of the local log."""

    segment: int = 0
    seq: int = 0
    offset: int = 0
    link: str = GENESIS

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Shipped:
        try:
            doc = json.loads(data)
            shipped = cls(int(doc["segment"]), int(doc["seq"]), int(doc["offset"]), str(doc["link"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError("audit checkpoint is not {segment, seq, offset, link}") from None
        if min(shipped.segment, shipped.seq, shipped.offset) < 0:
            raise ValueError("audit checkpoint has a negative count")
        return shipped


async def read_object(region: Region, name: str) -> bytes:
    _, body = await region.get(name)
    return b"".join([chunk async for chunk in body])


async def read_checkpoint(region: Region, node_id: str) -> Shipped:
    """The region's checkpoint for ``node_id`` (nothing shipped: the empty one)."""
    try:
        return Shipped.decode(await read_object(region, checkpoint_name(node_id)))
    except NotFound:
        return Shipped()


def cut_segment(path: str, after: Shipped, key: AuditKey | None, limit: int = MAX_SEGMENT) -> tuple[bytes, Shipped]:
    """The records of the log at ``path`` after ``after`` (at most ``limit`` bytes, whole records), and
    the checkpoint that ends them. Stops at the first record that does not chain on (under ``key``):
    what is damaged is never shipped; ``replicator audit verify`` names it."""
    lines: list[bytes] = []
    seq, link, size = after.seq, after.link, 0
    with open(path, "rb") as f:
        f.seek(after.offset)
        while size < limit:
            raw = f.readline(MAX_LINE + 1)
            if not raw.endswith(b"\n"):
                break  # the end, or a record being written
            try:
                record = decode_record(raw[:-1], key)
            except ValueError:
                break
            if record.fields["seq"] != seq + 1 or record.fields["prev"] != link:
                break
            lines.append(raw)
            seq, link, size = seq + 1, record.link, size + len(raw)
    return b"".join(lines), Shipped(after.segment + 1, seq, after.offset + size, link)


class AuditShipper:
    """Ships one node's audit log to every region; :meth:`run` is the background task of ``serve``."""

    def __init__(
        self,
        node_id: str,
        audit: AuditLog,
        regions: Mapping[str, Region],
        key: AuditKey,
        *,
        interval: float = 60.0,
        metrics: object | None = None,
    ) -> None:
        self.node_id, self.audit, self.regions, self.key, self.interval = node_id, audit, dict(regions), key, interval
        self.heads: dict[str, Shipped | None] = dict.fromkeys(self.regions)  # None: not read yet
        self.errors: dict[str, str] = {}
        self._caught_up_at = time.monotonic()  # every record then was in every region
        self._round = asyncio.Lock()  # one round at a time: two would cut the same records into two segments
        if metrics is not None:
            metrics.audit_unshipped.set_function(self.unshipped)  # type: ignore[attr-defined]
            metrics.audit_unshipped_age.set_function(self.unshipped_age)  # type: ignore[attr-defined]

    def shipped(self) -> int:
        """Records held by every region (as far as this process knows)."""
        return min((h.seq if h is not None else 0) for h in self.heads.values())

    def unshipped(self) -> int:
        head = self.audit.head
        return max(0, (head.seq if head is not None else 0) - self.shipped())

    def unshipped_age(self) -> float:
        return time.monotonic() - self._caught_up_at if self.unshipped() else 0.0

    def state(self) -> str:
        """The soft readiness check: "ok", or which regions are behind and why."""
        if not self.errors:
            return "ok"
        return "behind: " + ", ".join(f"{name} ({why})" for name, why in sorted(self.errors.items()))

    async def run(self) -> None:
        while True:
            try:
                await self.ship_once()
                self.errors.pop("local", None)
            except Exception as e:  # the local log unreadable: say so and keep trying; never stop the task
                self.errors["local"] = type(e).__name__
                log.warning("audit shipping failed", extra={"error": type(e).__name__})
            await asyncio.sleep(self.interval)

    async def ship_once(self) -> None:
        """One round: read unknown checkpoints, bring laggers up to the leader, ship what is new."""
        async with self._round:
            await self._ship_round()

    async def ship_within(self, seconds: float) -> str:
        """One round that may take at most ``seconds`` (a command's, or ``serve``'s last at shutdown):
        "ok", or what is behind. A round cut short is said, never raised: the next round catches up."""
        try:
            await asyncio.wait_for(self.ship_once(), seconds)
        except (TimeoutError, OSError) as e:
            return f"behind: {type(e).__name__}"
        return self.state()

    async def _ship_round(self) -> None:
        started = time.monotonic()  # before the head is read: every record older than this is in it
        before = self.audit.head
        for name in self.regions:
            if self.heads[name] is None:
                await self._try(name, self._read_head(name))
        known = {n: h for n, h in self.heads.items() if h is not None}
        if not known:
            return
        leader = max(known.values(), key=lambda h: h.seq)
        for name, head in known.items():
            if head.seq < leader.seq:
                await self._try(name, self._catch_up(name, head, leader))
        target = before.seq if before is not None else 0
        while leader.seq < target:  # what was there at the start: under steady appends a round still ends
            data, end = await asyncio.to_thread(cut_segment, str(self.audit.path), leader, self.key)
            if not data:
                break
            targets = [n for n, h in self.heads.items() if h == leader]
            if not any([await self._try(n, self._put(n, end, data)) for n in targets]):
                break
            leader = end
        if self.shipped() >= target:
            self._caught_up_at = started

    async def _try(self, name: str, step: Awaitable[None]) -> bool:
        try:
            await step
        except (RegionError, TimeoutError, ValueError) as e:
            self.errors[name] = type(e).__name__
            log.warning("audit shipping behind", extra={"region": name, "error": type(e).__name__})
            return False
        self.errors.pop(name, None)
        return True

    async def _read_head(self, name: str) -> None:
        self.heads[name] = await read_checkpoint(self.regions[name], self.node_id)

    async def _put(self, name: str, end: Shipped, data: bytes) -> None:
        region = self.regions[name]
        await region.put(segment_name(self.node_id, end.segment), data, {})
        await region.put(checkpoint_name(self.node_id), end.encode(), {})
        self.heads[name] = end

    async def _catch_up(self, name: str, head: Shipped, leader: Shipped) -> None:
        """Copy the segments ``name`` missed from the region that holds ``leader``."""
        source = next(self.regions[n] for n, h in self.heads.items() if h == leader)
        for segment in range(head.segment + 1, leader.segment + 1):
            data = await read_object(source, segment_name(self.node_id, segment))
            await self.regions[name].put(segment_name(self.node_id, segment), data, {})
        await self.regions[name].put(checkpoint_name(self.node_id), leader.encode(), {})
        self.heads[name] = leader
