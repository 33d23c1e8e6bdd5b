"""Prometheus metrics, one object passed to whoever records (no module-level registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Replication delay, acknowledged write -> held by both regions. 900 (15 minutes, S3 RTC's target) is a
# bucket edge, so "% replicated within 15 minutes" is one ratio of two series (docs/operations.md).
DELAY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 24 * 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "replicator_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_bytes = Counter(
            "replicator_http_body_bytes_total", "Plaintext body bytes moved by the API", ["direction"], registry=r
        )
        self.region_ops = Histogram(
            "replicator_region_op_seconds",
            "Region operation latency",
            ["region", "op", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_backlog = Gauge("replicator_journal_backlog", "Pending journal rows", registry=r)
        self.journal_oldest = Gauge("replicator_journal_oldest_seconds", "Age of the oldest pending row", registry=r)
        self.audit_unshipped = Gauge(
            "replicator_audit_unshipped_records", "Audit records not yet shipped to every region", registry=r
        )
        self.audit_unshipped_age = Gauge(
            "replicator_audit_unshipped_oldest_seconds",
            "Age bound of the oldest audit record not yet in every region",
            registry=r,
        )
        self.degraded_writes = Counter(
            "replicator_degraded_writes_total", "Writes acknowledged with one region and a journal row", registry=r
        )
        self.sin_unscanned = Counter(
            "replicator_sin_unscanned_parts_total",
            'Parts of stored bodies the SIN check could not look into (a class with unscannable = "accept")',
            ["data_class"],
            registry=r,
        )
        self.decrypts = Counter(
            "replicator_decrypts_total", "Authorized decrypts", ["data_class", "purpose"], registry=r
        )
        self.legacy_name_opens = Counter(
            "replicator_legacy_name_opens_total",
            "Names a listing opened with a content key (legacy seals, written before name keys)",
            ["data_class"],
            registry=r,
        )
        self.denied = Counter(
            "replicator_denied_total", "Requests refused by the access policy", ["action", "data_class"], registry=r
        )
        # 401s (replicator.observe.unauthenticated): a total, and a bounded summary of the last interval.
        self.unauthenticated = Counter(
            "replicator_unauthenticated_requests_total", "Requests refused 401 (no valid token)", registry=r
        )
        self.unauthenticated_sources = Gauge(
            "replicator_unauthenticated_sources",
            "Distinct source addresses refused 401 in the last summary interval (capped; the rest count as one)",
            registry=r,
        )
        self.unauthenticated_busiest = Gauge(
            "replicator_unauthenticated_busiest_source_requests",
            "401s from the busiest single source in the last summary interval",
            registry=r,
        )
        self.replicated = Counter(
            "replicator_replicated_total", "Journal tasks finished by workers", ["kind", "outcome"], registry=r
        )

        # The replication-lag SLO (S3 RTC's figures), per destination region; set from Journal.lag().
        self.pending_ops = Gauge(
            "replicator_replication_pending_operations", "Journal rows owed to a region", ["region"], registry=r
        )
        self.pending_bytes = Gauge(
            "replicator_replication_pending_bytes", "Bytes the journal's rows owe a region", ["region"], registry=r
        )
        self.oldest_pending = Gauge(
            "replicator_replication_oldest_pending_seconds",
            "Age of the oldest journal row owed to a region",
            ["region"],
            registry=r,
        )
        self.replication_delay = Histogram(
            "replicator_replication_delay_seconds",
            "Acknowledged write (its version stamp) to held by both regions, observed where a copy completes",
            ["region"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.audit_failures = Counter(
            "replicator_audit_append_failures_total", "Audit records that could not be written", registry=r
        )
        self.kek_rotation_unfinished = Gauge(
            "replicator_kek_rotation_unfinished",
            "1 while a KEK rotation is left linked (run `replicator keys rotate --finish`)",
            registry=r,
        )

    def set_lag(self, region: str, pending: int, pending_bytes: int, oldest_age: float) -> None:
        self.pending_ops.labels(region).set(pending)
        self.pending_bytes.labels(region).set(pending_bytes)
        self.oldest_pending.labels(region).set(oldest_age)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
