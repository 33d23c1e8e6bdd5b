"""Prometheus metrics, one object passed to whoever records (no module-level registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.decrypts = Counter(
            "replicator_decrypts_total", "Authorized decrypts", ["data_class", "purpose"], registry=r
        )
        self.denied = Counter(
            "replicator_denied_total", "Requests refused by the access policy", ["action", "data_class"], registry=r
        )
        self.replicated = Counter(
            "replicator_replicated_total", "Journal tasks finished by workers", ["kind", "outcome"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
