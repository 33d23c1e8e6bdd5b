"""``replicator health`` and ``replicator erase`` against the dev stack: ca on Azurite, jp on Swift
behind Keystone, run as the real command (a subprocess) from a config file.

Each test makes its own containers and removes them. Servers are stopped
(``server_stopped``: connections refused) or paused (``server_paused``:
SIGSTOP, connections hang) only for the block that needs it, on the stack
the tests run against, and always brought back. The servers are required:
a missing one fails the test, naming it (``tests.support.stack.stack_env``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from keys import AuditLog, KeyFile, LocalKeyring, generate_token
from replicator.journal.sqlite import SqliteJournal
from tests.support.clouds import Stores, start_cloud, write_config
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import server_paused, server_stopped

PROBE_TIMEOUT = 3.0
# The command's own time (probes and closes, reported as elapsed_s) may pass the probe timeout by this.
CLOSE_ALLOWANCE = 1.5
# Wall time adds the interpreter's start and imports (azure, openstacksdk): seconds on a loaded 2-CPU box.
# A command that waited for a stuck worker thread, or retried, would take many times longer.
WALL_LIMIT = 25.0


@pytest.fixture
def config(tmp_path, stores) -> Path:
    """The integration config with [health] probe_timeout = 3 s, its keyring and audit log made (as serve does)."""
    path = write_config(tmp_path, stores, all_hash=generate_token()[1], limited_hash=generate_token()[1])
    path.write_text(path.read_text() + f"\n[health]\nprobe_timeout = {PROBE_TIMEOUT}\n")
    LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True).close()
    AuditLog.open(tmp_path / "audit.log").close()
    return path


def replicator(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """The real command in a new process; (result, wall seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from replicator.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    return done, time.monotonic() - started


def health(config: Path, *extra: str) -> tuple[int, dict[str, dict], float]:
    """Exit code, checks by component, and the command's own seconds; the wall time is checked here."""
    done, wall = replicator("health", "--config", str(config), "--json", *extra)
    assert done.stdout, done.stderr[-2000:]
    report = json.loads(done.stdout)
    checks = {c["component"]: c for c in report["checks"]}
    assert report["status"] == max((c["status"] for c in checks.values()), key=["OK", "WARN", "CRIT"].index)
    assert wall < WALL_LIMIT, f"health took {wall:.1f}s of wall time ({report['elapsed_s']}s probing)"
    return done.returncode, checks, report["elapsed_s"]


async def probes_left(stores: Stores) -> list[str]:
    return await stores.azure_names("health/") + await stores.swift_names(prefix="health/")


async def test_health_is_ok_on_the_stack_and_leaves_no_probe(config, stores):
    done, _ = await asyncio.to_thread(replicator, "health", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replicator health: OK" in done.stdout
    code, checks, _ = await asyncio.to_thread(health, config)
    assert code == 0, checks
    assert {name: c["status"] for name, c in checks.items()} == {
        "region:ca": "OK",
        "region:jp": "OK",
        "keyring": "OK",
        "audit": "OK",
        "journal": "OK",
        "erasure-ledger": "OK",
    }
    for region in ("region:ca", "region:jp"):
        assert set(checks[region]["figures"]) >= {"auth_ms", "put_ms", "get_ms", "delete_ms", "list_ms"}
    assert await probes_left(stores) == []


async def test_swift_stopped_is_crit_for_jp_within_the_timeout(config, stores):
    with server_stopped("swift-proxy"):
        code, checks, elapsed = await asyncio.to_thread(health, config)
    assert code == 2
    assert checks["region:jp"]["status"] == "CRIT" and checks["region:ca"]["status"] == "OK"
    assert checks["region:jp"]["detail"].startswith("auth: Unavailable"), checks["region:jp"]
    assert elapsed < PROBE_TIMEOUT + CLOSE_ALLOWANCE, elapsed


async def test_a_hanging_swift_proxy_is_crit_for_jp_within_the_timeout(config, stores):
    with server_paused("swift-proxy"):
        code, checks, elapsed = await asyncio.to_thread(health, config)
    assert code == 2
    assert checks["region:jp"]["status"] == "CRIT" and checks["region:ca"]["status"] == "OK"
    # wait_for's deadline or the driver's own read timeout (the same 3 s), whichever fires first
    assert checks["region:jp"]["detail"].startswith("auth: "), checks["region:jp"]
    assert PROBE_TIMEOUT - 0.5 < elapsed < PROBE_TIMEOUT + CLOSE_ALLOWANCE, f"{elapsed}s with the proxy hanging"


async def test_keystone_stopped_without_a_cached_token_is_crit_for_jp(config, stores):
    with server_stopped("keystone"):
        code, checks, elapsed = await asyncio.to_thread(health, config)
    assert code == 2
    assert checks["region:jp"]["status"] == "CRIT" and checks["region:ca"]["status"] == "OK"
    assert checks["region:jp"]["detail"].startswith("auth: "), checks["region:jp"]
    assert elapsed < PROBE_TIMEOUT + CLOSE_ALLOWANCE, elapsed


async def test_azurite_stopped_is_crit_for_ca(config, stores):
    with server_stopped("azurite"):
        code, checks, elapsed = await asyncio.to_thread(health, config, "--region", "ca")
    assert code == 2
    assert checks["region:ca"]["status"] == "CRIT" and "region:jp" not in checks
    assert elapsed < PROBE_TIMEOUT + CLOSE_ALLOWANCE, elapsed


async def test_a_backlog_over_the_threshold_is_warn(config, stores):
    journal = SqliteJournal(config.parent / "journal.sqlite3")
    for i in range(5):
        await journal.add("copy", f"v1/backlog-{i}", src="ca", dst="jp")
    await journal.close()
    code, checks, _ = await asyncio.to_thread(health, config, "--backlog-warn", "4")
    assert code == 1
    assert checks["journal"]["status"] == "WARN" and checks["journal"]["figures"]["pending"] == 5
    assert all(c["status"] == "OK" for name, c in checks.items() if name != "journal")


async def test_a_postgresql_journal_that_hangs_is_crit_within_the_timeout(config, stores, monkeypatch):
    url = fresh_url("health")  # a schema of its own on the stack's PostgreSQL
    password = urlsplit(url).password
    monkeypatch.setenv("REPLICATOR_TEST_JOURNAL_PASSWORD", password)  # by reference, as the config wants it
    monkeypatch.setenv(
        "REPLICATOR_JOURNAL", url.replace(f":{password}@", "@") + "&password_env=REPLICATOR_TEST_JOURNAL_PASSWORD"
    )
    with AuditLog.open(config.parent / "audit.log") as audit:  # records, so a checkpoint is kept
        audit.append(principal="p", action="read", outcome="allowed")
    try:
        code, checks, _ = await asyncio.to_thread(health, config)
        assert code == 0 and checks["journal"]["status"] == "OK", checks["journal"]
        with AuditLog.open(config.parent / "audit.log") as audit:  # a record after the checkpoint
            audit.append(principal="p", action="read", outcome="allowed")
        with server_paused("postgres"):
            code, checks, elapsed = await asyncio.to_thread(health, config)
        assert code == 2
        assert checks["journal"]["status"] == "CRIT" and checks["region:jp"]["status"] == "OK"
        assert checks["audit"]["status"] == "OK"  # verified in full when the checkpoint cannot be read
        assert elapsed < PROBE_TIMEOUT + CLOSE_ALLOWANCE, elapsed
    finally:
        await drop_schema(url)


async def test_erase_through_the_command_empties_both_regions(tmp_path, stores):
    cloud, client = await start_cloud(tmp_path / "svc", stores, lambda: time.time_ns() // 1_000_000)
    try:
        for i in range(3):
            resp = await cloud.put(f"cust-erase/account/doc-{i}", b"private words")
            assert resp.status == 201 and (await resp.json())["replication"] == "complete"
        prefix = cloud.prefix("cust-erase")
    finally:
        await client.close()
    assert len(await stores.azure_names(prefix)) == 3 and len(await stores.swift_names(prefix=prefix)) == 3
    done, _ = await asyncio.to_thread(
        replicator, "erase", "cust-erase", "--yes", "--config", str(tmp_path / "svc" / "replicator.toml")
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["state"] == "done"
    assert receipt["regions"] == {"ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 3, "remaining": 0}}
    assert await stores.azure_names(prefix) == [] and await stores.swift_names(prefix=prefix) == []
    assert "cust-erase" not in done.stdout + done.stderr
