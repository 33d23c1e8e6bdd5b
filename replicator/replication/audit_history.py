"""One customer's access history: every audit record about their tag, from every node's chain.

Where the records come from: every node's chain as shipped to each region
(``audit/<node>/``, read a segment at a time by :class:`ShippedChain`, each
segment verified under the audit key before a record of it is used) and,
optionally, this node's local log (verified whole first, as ``replicator audit
verify`` does), which holds what was not shipped yet. A record held by both regions and the
local log is one access: records are identified by (node, seq, link).

A chain that does not verify is **said**, never silently used: its records
after the first bad one are left out and the finding names the node, the
region (None: the local log) and the record, as ``replicator audit verify``
does; a region that cannot be read is said too. Memory: one segment at a
time, plus the customer's own records (never the whole log). Records hold the
customer's tag, never the id, and principal names, never tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from keys import AuditKey
from keys.audit import MAX_LINE, decode, record_time, verify
from regions import Region, RegionError
from replicator.replication.audit_check import Finding, ShippedChain, shipped_nodes


@dataclass(frozen=True)
class Access:
    """One audited access to a customer's data (or attempt: ``outcome`` says)."""

    time: str
    node: str
    principal: str
    action: str
    data_class: str | None
    purpose: str | None
    outcome: str

    def to_json(self) -> dict[str, str | None]:
        doc = asdict(self)
        doc["class"] = doc.pop("data_class")
        return doc


@dataclass
class History:
    accesses: list[Access]  # sorted by time
    findings: list[Finding]  # chains that did not verify, regions that could not be read

    @property
    def broken(self) -> bool:
        """A chain was found broken (not only unreadable)."""
        return any(f.seq is not None for f in self.findings)


class _Gather:
    def __init__(self, customer_tag: str, since: datetime | None) -> None:
        self.customer_tag, self.since = customer_tag, since
        self.seen: set[tuple[str, int, str]] = set()
        self.accesses: list[Access] = []

    def add(self, node: str, line: bytes) -> None:
        if self.customer_tag.encode() not in line:  # most records are about someone else: skip the parse
            return
        record = decode(line.rstrip(b"\n"), None)  # the chain was verified under the key before this
        fields = record.fields
        if fields["customer_tag"] != self.customer_tag:
            return
        if self.since is not None and record_time(fields) < self.since:
            return
        ident = (node, fields["seq"], record.link)
        if ident in self.seen:
            return
        self.seen.add(ident)
        self.accesses.append(
            Access(
                fields["time"],
                node,
                fields["principal"],
                fields["action"],
                fields["class"],
                fields["purpose"],
                fields["outcome"],
            )
        )


async def customer_history(
    regions: Mapping[str, Region],
    key: AuditKey,
    customer_tag: str,
    *,
    local: tuple[str, Path] | None = None,
    since: datetime | None = None,
) -> History:
    """Every access to ``customer_tag`` recorded in any node's shipped chain, in any region, and in the
    ``local`` (node id, path) log; deduplicated, sorted by time, each chain verified before use."""
    gather = _Gather(customer_tag, since)
    nodes, findings = await shipped_nodes(regions)
    for node in sorted(nodes):
        for name, region in regions.items():
            chain = ShippedChain(region, node, key)
            try:
                async for segment in chain.segments():
                    first = chain.count - len(segment) + 1  # the seq of the segment's first line
                    for i, line in enumerate(segment):
                        if chain.vouched(first + i):
                            gather.add(node, line)
            except (RegionError, ValueError) as e:
                findings.append(Finding(node, name, None, f"cannot read: {type(e).__name__}"))
                continue
            if chain.problem is not None:
                findings.append(Finding(node, name, chain.bad, chain.problem))
    if local is not None:
        node, path = local
        result = await asyncio.to_thread(verify, path, key=key, require_keyed=True)
        if not result.ok:  # said; only the records before the first bad one are used
            findings.append(Finding(node, None, result.first_bad_line, result.reason))
        if result.records:
            for line in await asyncio.to_thread(_local_matches, path, result.records, customer_tag):
                gather.add(node, line)
    gather.accesses.sort(key=lambda a: (a.time, a.node))
    return History(gather.accesses, findings)


def _local_matches(path: Path, records: int, customer_tag: str) -> list[bytes]:
    """Of the first ``records`` lines of the log (those verify vouched for), the ones naming the tag."""
    needle, found = customer_tag.encode(), []
    with open(path, "rb") as f:
        for _ in range(records):
            line = f.readline(MAX_LINE + 1)
            if needle in line:
                found.append(line)
    return found
