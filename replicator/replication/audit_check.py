"""Checking every node's audit chain against what was shipped to both regions (``audit_ship``).

For each node with anything under ``audit/<node id>/`` in a region, and for
each region: the segments 1..checkpoint are all there (a missing one was
deleted), they chain on under the audit key as one log, and their last record
is the checkpoint. For a node whose local log is given, that log must verify
on its own (keyed) and hold, byte for byte, every record a region holds: a
local record edited, cut off the end, or the whole file re-chained differs
from the shipped copy at its first changed record. Each finding names the node,
the region (None for the local log alone) and the first bad record.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from keys import AuditKey
from keys.audit import MAX_LINE, Checkpoint, VerifyResult, verify
from regions import NotFound, Region, RegionError
from replicator.replication.audit_ship import PREFIX, Shipped, read_checkpoint, read_object, segment_name


@dataclass(frozen=True)
class Finding:
    node: str
    region: str | None  # None: the local log
    seq: int | None  # the first bad record (None: the region could not be read)
    reason: str

    def __str__(self) -> str:
        where = f"region {self.region}" if self.region else "local log"
        at = f" at record {self.seq}" if self.seq is not None else ""
        return f"node {self.node}, {where}{at}: {self.reason}"


async def shipped_nodes(regions: Mapping[str, Region]) -> tuple[set[str], list[Finding]]:
    """Every node id with shipped audit objects in any region, and the regions that could not be listed."""
    nodes: set[str] = set()
    unread: list[Finding] = []
    for name, region in regions.items():
        try:
            async for info in region.list(PREFIX):
                nodes.add(info.name[len(PREFIX) :].split("/", 1)[0])
        except RegionError as e:
            unread.append(Finding("*", name, None, f"cannot list: {type(e).__name__}"))
    return nodes, unread


class ShippedChain:
    """One node's chain as one region holds it, read a segment at a time and verified as it is read.

    :meth:`segments` yields each segment's lines (memory: one segment, at most ``MAX_SEGMENT``),
    each verified under the audit key as chaining on from the segment before (:func:`verify` from a
    checkpoint, the same check as for a whole log). Once it is done, ``problem`` says what is wrong
    (None: the chain is whole and the checkpoint ends it) and ``bad`` is the first bad record:
    records before ``bad`` verified even then (:meth:`vouched`)."""

    def __init__(self, region: Region, node: str, key: AuditKey) -> None:
        self.region, self.node, self.key = region, node, key
        self.checkpoint = Shipped()
        self.problem: str | None = None
        self.bad = 0
        self.count = 0  # lines read

    def vouched(self, seq: int) -> bool:
        """Whether record ``seq`` (of the segments yielded so far) verified."""
        return self.problem is None or seq < self.bad

    def _fail(self, problem: str, bad: int) -> None:
        if self.problem is None:
            self.problem, self.bad = problem, bad

    async def segments(self) -> AsyncIterator[list[bytes]]:
        self.checkpoint = checkpoint = await read_checkpoint(self.region, self.node)
        last, head = None, None
        for segment in range(1, checkpoint.segment + 1):
            try:
                data = await read_object(self.region, segment_name(self.node, segment))
            except NotFound:
                self._fail(f"segment {segment} of {checkpoint.segment} is missing (deleted)", self.count + 1)
                return
            lines = data.splitlines(keepends=True)
            if self.problem is None:
                result = await asyncio.to_thread(_verify_lines, lines, self.key, last, head)
                if not result.ok:
                    self._fail(f"shipped segments: {result.reason}", result.first_bad_line or 1)
                elif lines:
                    last, head = lines[-1], result.head
            self.count += len(lines)
            yield lines
        if self.problem is None and (
            self.count != checkpoint.seq or (head is not None and head.hash != checkpoint.link)
        ):
            self._fail("the checkpoint does not end the shipped segments", min(self.count, checkpoint.seq))


async def shipped_chain(region: Region, node: str, key: AuditKey) -> tuple[list[bytes], Shipped, str | None, int]:
    """(the shipped records' lines, the checkpoint, what is wrong or None, the first bad record)."""
    chain = ShippedChain(region, node, key)
    lines = [line async for segment in chain.segments() for line in segment]
    return lines, chain.checkpoint, chain.problem, chain.bad


def _verify_lines(lines: list[bytes], key: AuditKey, last: bytes | None, head: Checkpoint | None) -> VerifyResult:
    """Verify ``lines`` as the start of a log, or (``last``, the previous segment's last line, whose
    checkpoint is ``head``) as chaining on from it."""
    fd, name = tempfile.mkstemp(prefix="audit-shipped-")
    try:
        with os.fdopen(fd, "wb") as f:
            if last is not None:
                f.write(last)
            f.writelines(lines)
        if last is None or head is None:
            return verify(name, key=key)
        return verify(name, key=key, from_checkpoint=Checkpoint(head.seq, 0, head.hash))
    finally:
        os.unlink(name)


def _local_lines(path: Path, count: int) -> list[bytes]:
    with open(path, "rb") as f:
        return [line for line in (f.readline(MAX_LINE + 1) for _ in range(count)) if line]


async def check_nodes(
    regions: Mapping[str, Region], key: AuditKey, local_logs: Mapping[str, Path]
) -> tuple[list[Finding], dict[str, int]]:
    """Every finding, and for each node the records every region holds (when all agree it is whole)."""
    nodes, findings = await shipped_nodes(regions)
    held: dict[str, int] = {}
    for node in sorted(nodes | set(local_logs)):
        local = local_logs.get(node)
        if local is not None:
            result = await asyncio.to_thread(verify, local, key=key, require_keyed=True)
            if not result.ok:
                findings.append(Finding(node, None, result.first_bad_line, result.reason))
        for name, region in regions.items():
            try:
                lines, checkpoint, wrong, bad = await shipped_chain(region, node, key)
            except (RegionError, ValueError) as e:
                findings.append(Finding(node, name, None, f"cannot read: {type(e).__name__}"))
                continue
            if wrong is not None:
                findings.append(Finding(node, name, bad, wrong))
            held[node] = min(held.get(node, checkpoint.seq), checkpoint.seq)
            if local is None or not lines:
                continue
            mine = await asyncio.to_thread(_local_lines, local, len(lines))
            for seq, (ours, shipped) in enumerate(zip(mine, lines, strict=False), start=1):
                if ours != shipped:
                    findings.append(Finding(node, name, seq, "the local record differs from the one shipped"))
                    break
            else:
                if len(mine) < len(lines):
                    findings.append(
                        Finding(
                            node,
                            name,
                            len(mine) + 1,
                            f"the local log ends at record {len(mine)}; the region holds {len(lines)} (truncated)",
                        )
                    )
    return findings, held
