"""Every region call logged and measured, as the portable layer reports it (:class:`regions.Observer`).

The drivers neither log nor measure: the portable layer in front of each
tells its observer of every call, and this one turns the call into a
histogram sample (region, op, outcome) and a log line. Logs carry the op,
region, object name (a tag, never a customer identifier), duration and
outcome. Bodies and metadata values are never logged.
"""

from __future__ import annotations

import logging

from replicator.observe.metrics import Metrics

log = logging.getLogger("replicator.region")


class RegionLog:
    """The replicator's :class:`regions.Observer`: metrics and logs for every region call."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def observe(self, region: str, op: str, name: str | None, outcome: str, seconds: float) -> None:
        self._metrics.region_ops.labels(region, op, outcome).observe(seconds)
        level = logging.DEBUG if outcome in ("ok", "NotFound") else logging.WARNING
        log.log(
            level,
            "region op",
            extra={"region": region, "op": op, "object": name, "outcome": outcome, "seconds": round(seconds, 4)},
        )
