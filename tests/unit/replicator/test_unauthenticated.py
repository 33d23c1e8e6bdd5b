"""401s counted per source and summarised into the audit log: one record per source and interval, never the token."""

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer

from keys import AuditLog
from keys.audit import verify
from replicator.config import load_config
from replicator.embedded import ensure
from replicator.http.app import build_app
from replicator.observe.metrics import Metrics
from replicator.observe.unauthenticated import OTHER, UnauthenticatedTally, source_of

BAD_TOKEN = "rpl_not-a-valid-token-but-a-secret-one-all-the-same"


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def summaries(path) -> list[dict]:
    return [r for r in records(path) if r["action"] == "unauthenticated"]


async def bad_requests(var, n: int, **app_options) -> bytes:
    """``n`` requests with a bad token against a service on ``var``; the metrics after; the service stopped."""
    config_path, _ = ensure(var)
    app = build_app(load_config(config_path), **app_options)
    async with TestClient(TestServer(app)) as client:
        for i in range(n):
            headers = {"Authorization": f"Bearer {BAD_TOKEN}"} if i % 2 else {}  # a bad token, or none
            resp = await client.get("/v1/objects/cust-1/account/doc", headers={**headers, "X-Purpose": "service"})
            assert resp.status == 401
        metrics = await (await client.get("/metrics")).read()
    return metrics


def test_a_hundred_bad_requests_from_one_source_are_one_record_saying_100(tmp_path):
    var = tmp_path / "var"
    metrics = asyncio.run(bad_requests(var, 100))
    assert b"replicator_unauthenticated_requests_total 100.0" in metrics
    found = summaries(var / "audit.log")  # the summary written at shutdown
    assert [(r["principal"], r["outcome"]) for r in found] == [("unauthenticated@127.0.0.1", "count-100")]
    assert BAD_TOKEN not in (var / "audit.log").read_text()
    assert verify(var / "audit.log").ok


def test_a_summary_is_written_every_interval_only_when_there_were_401s(tmp_path):
    var = tmp_path / "var"

    async def run() -> None:
        config_path, _ = ensure(var)
        app = build_app(load_config(config_path), unauthenticated_interval=0.2)
        async with TestClient(TestServer(app)) as client:
            for _ in range(3):
                assert (await client.get("/v1/objects/cust-1/account/doc")).status == 401
            await asyncio.sleep(0.5)  # one summary of 3; the quiet intervals after it write nothing
            assert [r["outcome"] for r in summaries(var / "audit.log")] == ["count-3"]
            assert (await client.get("/v1/objects/cust-1/account/doc")).status == 401
            await asyncio.sleep(0.5)
            assert [r["outcome"] for r in summaries(var / "audit.log")] == ["count-3", "count-1"]
            await asyncio.sleep(0.3)

    asyncio.run(run())
    assert [r["outcome"] for r in summaries(var / "audit.log")] == ["count-3", "count-1"]  # nothing at shutdown


def test_sources_past_the_cap_fold_into_other():
    metrics = Metrics()
    tally = UnauthenticatedTally(metrics, max_sources=2)
    for remote in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.1", None]:
        tally.count(remote)
    assert tally.take() == {"10.0.0.1": 2, "10.0.0.2": 1, OTHER: 3}
    assert tally.take() == {}  # counting starts again


def test_sources_are_made_safe_for_a_record():
    assert source_of("fe80::1%eth0") == "fe80::1-eth0"
    assert source_of("::FFFF:10.0.0.1") == "::ffff:10.0.0.1"
    assert source_of(None) == "unknown"
    assert source_of("a b/c\n" * 40) == ("a-b-c-" * 40)[:64]


def test_the_summary_s_gauges_stay_bounded(tmp_path):
    metrics = Metrics()
    tally = UnauthenticatedTally(metrics, max_sources=4)
    for i in range(1000):
        tally.count(f"10.0.{i // 256}.{i % 256}")

    async def flush() -> int:
        with AuditLog.open(tmp_path / "audit.log") as audit:
            return await tally.flush(audit)

    assert asyncio.run(flush()) == 5  # four sources and "other"
    text = metrics.exposition().decode()
    assert "replicator_unauthenticated_sources 5.0" in text
    assert "replicator_unauthenticated_busiest_source_requests 996.0" in text
    assert "replicator_unauthenticated_requests_total 1000.0" in text
    assert len(summaries(tmp_path / "audit.log")) == 5
