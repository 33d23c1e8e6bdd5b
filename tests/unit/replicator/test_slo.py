"""The commands' Prometheus figures: reconcile's textfile and work's /metrics with the journal's lag."""

from __future__ import annotations

import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from replicator.cli.slo import serve_metrics, write_reconcile_textfile
from replicator.journal.sqlite import SqliteJournal
from replicator.observe.lag import record_lag
from replicator.observe.metrics import Metrics


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_failed_run_keeps_the_last_success_and_the_file_is_replaced_whole(tmp_path):
    path = tmp_path / "textfile" / "replicator_reconcile.prom"
    counts = {"copy": {"planned": 3, "done": 3}}
    write_reconcile_textfile(path, exit_code=0, started=900.0, counts=counts, kek_rotation_unfinished=False, now=1000.0)
    write_reconcile_textfile(path, exit_code=1, started=1900.0, counts={}, now=2000.0)
    got = _samples(path.read_text())
    assert got[("replicator_reconcile_last_success_timestamp_seconds", ())] == 1000.0
    assert got[("replicator_reconcile_last_run_timestamp_seconds", ())] == 2000.0
    assert got[("replicator_reconcile_exit_code", ())] == 1
    assert got[("replicator_reconcile_duration_seconds", ())] == 100.0
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_the_first_run_failing_writes_no_success(tmp_path):
    path = tmp_path / "r.prom"
    write_reconcile_textfile(path, exit_code=2, started=0.0, counts={}, kek_rotation_unfinished=True, now=5.0)
    got = _samples(path.read_text())
    assert ("replicator_reconcile_last_success_timestamp_seconds", ()) not in got
    assert got[("replicator_kek_rotation_unfinished", ())] == 1


async def test_metrics_serve_the_lag_per_region_read_at_scrape_time(tmp_path):
    journal = SqliteJournal(tmp_path / "journal.db", clock=lambda: 100.0)
    metrics = Metrics()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = await serve_metrics(metrics, port, refresh=lambda: record_lag(metrics, journal, ["ca", "jp"]))
    try:
        await journal.add("copy", "v1/a", src="ca", dst="jp", version="0000000000001000.00000.n", size=1234)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            got = _samples(await r.text())
    finally:
        await runner.cleanup()
        await journal.close()
    assert got[("replicator_replication_pending_operations", (("region", "jp"),))] == 1
    assert got[("replicator_replication_pending_bytes", (("region", "jp"),))] == 1234
    assert got[("replicator_replication_pending_operations", (("region", "ca"),))] == 0  # owed nothing: 0, no gap
