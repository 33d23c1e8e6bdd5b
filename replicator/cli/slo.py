"""The commands' Prometheus figures: ``work`` serves ``/metrics``; ``reconcile`` writes a textfile.

``work`` is a long-lived process, so it is scraped (``--metrics-port``,
127.0.0.1 unless ``--metrics-host`` says otherwise). ``reconcile`` is a
nightly job that exits, so it leaves its figures in a file for
node_exporter's textfile collector (``--metrics-file``), the CronJob
convention; prometheus_client writes it to a temporary file and renames it,
so the collector never reads half a file. The alert rules and dashboard in
``deploy/observability/`` use these names.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from replicator.journal import JournalError
from replicator.observe.metrics import Metrics

LAST_SUCCESS = "replicator_reconcile_last_success_timestamp_seconds"


async def serve_metrics(
    metrics: Metrics, port: int, host: str = "127.0.0.1", *, refresh: Callable[[], Awaitable[None]] | None = None
) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` until the returned runner is cleaned up; ``refresh`` runs
    before each scrape (the journal's figures are read when asked for, not on a timer)."""

    async def exposition(_: web.Request) -> web.Response:
        if refresh is not None:
            try:
                await refresh()
            except JournalError:  # its database is away: serve the rest, the lag gauges keep their last value
                pass
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _previous_success(path: Path) -> float | None:
    """The last success an earlier run recorded, so a failed run does not erase it."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAST_SUCCESS:
                return sample.value
    return None


def write_reconcile_textfile(
    path: Path,
    *,
    exit_code: int,
    started: float,
    counts: Mapping[str, Mapping[str, int]],
    kek_rotation_unfinished: bool | None = None,
    now: float | None = None,
) -> None:
    """The run's figures for node_exporter: when it ran, how it ended, what it did (atomically replaced)."""
    now = time.time() if now is None else now
    registry = CollectorRegistry()
    Gauge("replicator_reconcile_last_run_timestamp_seconds", "When the last reconcile ended", registry=registry).set(
        now
    )
    Gauge("replicator_reconcile_exit_code", "0 clean, 1 failures, 2 could not run", registry=registry).set(exit_code)
    Gauge("replicator_reconcile_duration_seconds", "How long the last reconcile ran", registry=registry).set(
        max(0.0, now - started)
    )
    success = now if exit_code == 0 else _previous_success(path)
    if success is not None:
        Gauge(LAST_SUCCESS, "When a reconcile last ended clean", registry=registry).set(success)
    actions = Gauge(
        "replicator_reconcile_actions",
        "The last run's actions by kind and outcome",
        ["kind", "outcome"],
        registry=registry,
    )
    for kind, outcomes in counts.items():
        for outcome, n in outcomes.items():
            actions.labels(kind, outcome).set(n)
    if kek_rotation_unfinished is not None:
        Gauge("replicator_kek_rotation_unfinished", "1 while a KEK rotation is left linked", registry=registry).set(
            int(kek_rotation_unfinished)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)  # a temporary file beside it, then os.replace
