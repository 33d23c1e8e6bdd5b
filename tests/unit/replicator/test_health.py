"""Health grading over real local regions, a switched-off region and a hanging one."""

import asyncio
import time

from keys import AuditLog, KeyFile, LocalKeyring
from regions.local import LocalRegion
from replicator.health import CRIT, OK, WARN, Thresholds, check_audit, check_journal, check_region, run_checks, worst
from replicator.journal.sqlite import SqliteJournal
from tests.fault.faulty import FaultyRegion


class Hanging(LocalRegion):
    async def put(self, *args, **kwargs):
        await asyncio.sleep(3600)


async def test_a_healthy_region_is_ok_and_leaves_no_probe(tmp_path):
    region = LocalRegion(tmp_path / "r", name="ca")
    check = await check_region("ca", region, Thresholds())
    assert check.status == OK and set(check.figures) == {"put_ms", "get_ms", "delete_ms", "list_ms"}
    assert [i async for i in region.list()] == []


async def test_a_down_region_is_crit_and_a_hanging_one_is_crit_within_the_timeout(tmp_path):
    down = FaultyRegion(LocalRegion(tmp_path / "d", name="jp"))
    down.down = True
    assert (await check_region("jp", down, Thresholds())).status == CRIT
    started = time.monotonic()
    check = await check_region("jp", Hanging(tmp_path / "h", name="jp"), Thresholds(probe_timeout=0.3))
    assert check.status == CRIT and "no answer within 0.3s" in check.detail
    assert time.monotonic() - started < 2


async def test_slow_region_steps_are_warn(tmp_path):
    check = await check_region("ca", LocalRegion(tmp_path / "r", name="ca"), Thresholds(latency_warn_ms=-1))
    assert check.status == WARN and check.detail.startswith("slow:")


async def test_journal_backlog_over_the_threshold_is_warn(tmp_path):
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    assert (await check_journal(journal, Thresholds(backlog_warn=1))).status == OK
    for i in range(2):
        await journal.add("copy", f"n{i}", src="ca", dst="jp")
    check = await check_journal(journal, Thresholds(backlog_warn=1))
    assert check.status == WARN and check.figures["pending"] == 2
    await journal.close()


def test_a_broken_audit_chain_is_crit(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as log:
        for _ in range(3):
            log.append(principal="p", action="read", outcome="allowed")
    assert check_audit(path).status == OK
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    assert check_audit(path).status == CRIT
    assert check_audit(tmp_path / "missing.log").status == CRIT


async def test_run_checks_grades_the_worst(tmp_path):
    KeyFile.generate(tmp_path / "kek.key")
    keyring = LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True)
    AuditLog.open(tmp_path / "audit.log").close()
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    regions = {"ca": LocalRegion(tmp_path / "ca", name="ca"), "jp": LocalRegion(tmp_path / "jp", name="jp")}
    checks = await run_checks(regions, keyring, tmp_path / "audit.log", journal, Thresholds())
    assert [c.component for c in checks] == ["region:ca", "region:jp", "keyring", "audit", "journal"]
    assert worst(checks) == OK
    regions["jp"] = FaultyRegion(regions["jp"])
    regions["jp"].down = True
    assert worst(await run_checks(regions, keyring, tmp_path / "audit.log", journal, Thresholds())) == CRIT
    await journal.close()
