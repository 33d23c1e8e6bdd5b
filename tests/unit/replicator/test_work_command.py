"""`replicator work`: the replication workers alone, on the embedded default (SQLite journal)."""

import asyncio
import time

from click.testing import CliRunner

from regions.local import LocalRegion
from replicator.cli import main
from replicator.embedded import ensure
from replicator.hlc import Version
from replicator.journal.sqlite import SqliteJournal
from tests.support.seed import path, put_live, state


def test_work_until_empty_carries_out_the_backlog_and_exits_0(tmp_path):
    var = tmp_path / "var"
    config, _ = ensure(var)
    names = [path(f"c{i}", "n") for i in range(20)]

    async def seed():
        ca = LocalRegion(var / "regions" / "ca", name="ca")
        journal = SqliteJournal(var / "journal.sqlite3")
        for name in names:
            await put_live(ca, name, Version(1_900_000_000_000, 0, "n1"))
            await journal.add("copy", name, src="ca", dst="jp")
        await ca.close()
        await journal.close()

    asyncio.run(seed())
    result = CliRunner().invoke(main, ["work", "--config", str(config), "--until-empty", "--idle-wait", "0.05"])
    assert result.exit_code == 0, result.output
    assert "started" in result.output and "stopped" in result.output

    async def states():
        ca, jp = LocalRegion(var / "regions" / "ca", name="ca"), LocalRegion(var / "regions" / "jp", name="jp")
        journal = SqliteJournal(var / "journal.sqlite3")
        try:
            return await state(ca), await state(jp), (await journal.backlog()).pending
        finally:
            await ca.close()
            await jp.close()
            await journal.close()

    ca, jp, pending = asyncio.run(states())
    assert ca == jp and len(jp) == 20 and pending == 0


def test_work_cannot_start_without_its_journal(tmp_path, monkeypatch):
    var = tmp_path / "var"
    config, _ = ensure(var)
    monkeypatch.setenv("REPLICATOR_TEST_PW", "secret-pw")
    config.write_text(
        config.read_text().replace(
            'journal = "sqlite:///journal.sqlite3"',
            'journal = "postgresql://u@127.0.0.1:1/db?connect_timeout=1&password_env=REPLICATOR_TEST_PW"',
        )
    )
    result = CliRunner().invoke(main, ["work", "--config", str(config)])
    assert result.exit_code == 2 and "127.0.0.1:1/db is unavailable" in result.output
    assert "secret-pw" not in result.output
    assert CliRunner().invoke(main, ["work", "--config", str(tmp_path / "nope.toml")]).exit_code == 2


def test_work_serves_metrics_with_the_lag_and_the_delay_of_what_it_copied(tmp_path):
    import socket

    import aiohttp

    from replicator.cli.work import work
    from replicator.config import load_config

    var = tmp_path / "var"
    config_path, _ = ensure(var)
    written = int(time.time() * 1000) - 5_000  # acknowledged 5 s ago
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def run():
        ca = LocalRegion(var / "regions" / "ca", name="ca")
        journal = SqliteJournal(var / "journal.sqlite3")
        await put_live(ca, path("c", "n"), Version(written, 0, "n1"))
        await journal.add("copy", path("c", "n"), src="ca", dst="jp", version=str(Version(written, 0, "n1")))
        await ca.close()
        stop = asyncio.Event()
        running = asyncio.ensure_future(
            work(
                load_config(config_path),
                concurrency=2,
                lease=60,
                idle_wait=0.05,
                until_empty=False,
                stop=stop,
                metrics_port=port,
            )
        )
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                try:
                    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
                        text = await r.text()
                except aiohttp.ClientConnectionError:
                    continue
                if 'replicator_replication_delay_seconds_count{region="jp"} 1.0' in text:
                    return text
            raise AssertionError("the copy's delay never showed on /metrics")
        finally:
            stop.set()
            assert await running == 0
            await journal.close()

    text = asyncio.run(run())
    assert 'replicator_replication_delay_seconds_bucket{le="5.0",region="jp"} 0.0' in text
    assert 'replicator_replication_delay_seconds_bucket{le="15.0",region="jp"} 1.0' in text
    assert 'replicator_replication_pending_operations{region="ca"} 0.0' in text
