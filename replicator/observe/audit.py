"""The audit log, counted: an append that cannot be written refuses a read, and operators are told.

``keys`` knows nothing of the service's metrics, so the count is kept here, in a
subclass the runtime opens in place of :class:`keys.AuditLog`.
"""

from __future__ import annotations

import os
from typing import Any

from keys import AuditLog, AuditUnavailable
from keys.audit import AuditKey, Checkpoint
from replicator.observe.metrics import Metrics


class CountedAuditLog(AuditLog):
    """An :class:`AuditLog` that counts failed appends in ``replicator_audit_append_failures_total``."""

    metrics: Metrics | None = None

    @classmethod
    def counting(cls, path: str | os.PathLike[str], metrics: Metrics, key: AuditKey | None = None) -> CountedAuditLog:
        log = cls.open(path, key)
        assert isinstance(log, CountedAuditLog)
        log.metrics = metrics
        return log

    def _write_batch(self, records: list[Any]) -> list[Checkpoint]:
        # Every append goes through here, the service's group-committed ones included.
        try:
            return super()._write_batch(records)
        except AuditUnavailable:  # the record is not durable: the read is refused and the alert fires
            if self.metrics is not None:
                self.metrics.audit_failures.inc()
            raise
