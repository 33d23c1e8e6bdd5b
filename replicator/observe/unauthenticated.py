"""Unauthenticated attempts (401), counted per source and summarised into the audit log.

A request refused for want of a valid token is not an access to anyone's
data, but a run of them is what a token-guessing attack looks like, so an
auditor must see it, and a flood of them must not become a flood of records.
So each 401 only counts: per source address (the TCP peer; behind a proxy,
the proxy), in memory, bounded — at most ``max_sources`` distinct sources per
interval, every later one folded into ``other``. Every ``interval`` seconds
(and at shutdown) the counts become one audit record per counted source,
``principal = "unauthenticated@<address>"``, ``action = "unauthenticated"``,
``outcome = "count-<n>"``, and start again; an interval with no 401 writes
nothing. So 100 refused requests from one address in a minute are one record
saying 100, and a minute's records are at most ``max_sources + 1``.

The presented token is never seen here: only the address is counted.
Metrics: ``replicator_unauthenticated_requests_total`` (every 401, no labels)
and, of the last interval summarised, ``replicator_unauthenticated_sources``
(distinct sources, ``other`` counting as one) and
``replicator_unauthenticated_busiest_source_requests`` (the largest count of
one source): bounded cardinality, whatever the attacker's addresses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter

from keys import AuditLog
from replicator.observe.metrics import Metrics

log = logging.getLogger("replicator.observe.unauthenticated")

OTHER = "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9.:-]")


def source_of(remote: str | None) -> str:
    """A peer address as a record may hold it (an IPv6 zone's ``%`` and anything odd made ``-``)."""
    if not remote:
        return "unknown"
    return _UNSAFE.sub("-", remote)[:64].lower()


class UnauthenticatedTally:
    """Counts 401s per source between summaries; :meth:`run` writes a summary every ``interval``."""

    def __init__(self, metrics: Metrics, *, max_sources: int = 32, interval: float = 60.0) -> None:
        if max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        self.metrics = metrics
        self.max_sources = max_sources
        self.interval = interval
        self._counts: Counter[str] = Counter()

    def count(self, remote: str | None) -> None:
        """One refused request from ``remote``."""
        source = source_of(remote)
        if source not in self._counts and len(self._counts) >= self.max_sources:
            source = OTHER
        self._counts[source] += 1
        self.metrics.unauthenticated.inc()

    def take(self) -> dict[str, int]:
        """The counts since the last summary, and start again."""
        counts, self._counts = dict(self._counts), Counter()
        return counts

    async def flush(self, audit: AuditLog) -> int:
        """Write one record per source counted since the last summary; how many were written.

        Best effort, like the 403 records: a log that cannot be written loses this summary (the metric
        keeps the total, and the failed append is counted where every append goes)."""
        counts = self.take()
        self.metrics.unauthenticated_sources.set(len(counts))
        self.metrics.unauthenticated_busiest.set(max(counts.values(), default=0))
        if not counts:
            return 0
        appends = [
            audit.append_async(principal=f"unauthenticated@{source}", action="unauthenticated", outcome=f"count-{n}")
            for source, n in sorted(counts.items())
        ]
        results = await asyncio.gather(*appends, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("unauthenticated summary not written", extra={"records": len(failed)})
        return len(results) - len(failed)

    async def run(self, audit: AuditLog) -> None:
        """The background task of ``serve``: a summary every ``interval`` seconds (cancel, then ``flush``)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.flush(audit)
