"""The replication-lag gauges, set from the journal's per-region figures (``Journal.lag()``).

``serve`` refreshes them on a timer beside its workers; ``work`` when ``/metrics`` is scraped. This
room sits beside the journal's, so it takes anything with ``lag()`` rather than importing the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from replicator.observe.metrics import Metrics

log = logging.getLogger("replicator.observe.lag")


class _Lag(Protocol):  # replicator.journal.RegionLag
    @property
    def dst(self) -> str: ...
    @property
    def pending(self) -> int: ...
    @property
    def pending_bytes(self) -> int: ...
    @property
    def oldest_age(self) -> float: ...


class _Journal(Protocol):
    async def lag(self) -> Sequence[_Lag]: ...


async def record_lag(metrics: Metrics, journal: _Journal, regions: Iterable[str]) -> None:
    """Set the lag gauges; a region owed nothing reads 0, never a gap an alert would miss."""
    owed = {lag.dst: lag for lag in await journal.lag()}
    for region in sorted(set(regions) | set(owed)):
        lag = owed.get(region)
        metrics.set_lag(region, *(lag.pending, lag.pending_bytes, lag.oldest_age) if lag else (0, 0, 0.0))


async def refresh_lag(metrics: Metrics, journal: _Journal, regions: Iterable[str], every: float = 15.0) -> None:
    """``record_lag`` every ``every`` seconds until cancelled; a journal that fails is logged and retried."""
    regions = list(regions)
    while True:
        try:
            await record_lag(metrics, journal, regions)
        except Exception as e:  # the journal's database is away: the gauges keep their last value
            log.warning("lag figures unavailable", extra={"error": type(e).__name__, "detail": str(e)})
        await asyncio.sleep(every)
