"""Health grading over real local regions, a switched-off region and a hanging one."""

import asyncio
import dataclasses
import os
import time
from datetime import timedelta

from keys import AuditLog, KeyFile, LocalKeyring, WrongPassphrase
from regions import Unavailable
from regions.local import LocalRegion
from replicator.config import HealthConfig
from replicator.health.probes import (
    CRIT,
    OK,
    PROBE_PREFIX,
    STALE_PROBE_S,
    WARN,
    Thresholds,
    _Locked,
    audit_checkpoint_key,
    check_audit,
    check_journal,
    check_keyring,
    check_region,
    run_checks,
    worst,
)
from replicator.journal.sqlite import SqliteJournal
from tests.support.faulty import FaultyRegion


class Hanging(LocalRegion):
    async def put(self, *args, **kwargs):
        await asyncio.sleep(3600)


class BrokenGet(LocalRegion):
    async def get(self, name):
        raise Unavailable("get refused", region=self.name, name=name)


def audit_log(path, records=3):
    with AuditLog.open(path) as log:
        for _ in range(records):
            log.append(principal="p", action="read", outcome="allowed")
    return path


async def test_a_healthy_region_is_ok_and_leaves_no_probe(tmp_path):
    region = LocalRegion(tmp_path / "r", name="ca")
    check = await check_region("ca", region, Thresholds())
    assert check.status == OK and set(check.figures) == {"auth_ms", "put_ms", "get_ms", "delete_ms", "list_ms"}
    assert [i async for i in region.list()] == []


async def test_a_down_region_is_crit_and_a_hanging_one_is_crit_within_the_timeout(tmp_path):
    down = FaultyRegion(LocalRegion(tmp_path / "d", name="jp"))
    down.down = True
    check = await check_region("jp", down, Thresholds())
    assert check.status == CRIT and check.detail.startswith("auth: Unavailable")
    started = time.monotonic()
    check = await check_region("jp", Hanging(tmp_path / "h", name="jp"), Thresholds(probe_timeout=0.3))
    assert check.status == CRIT and check.detail == "put: no answer within 0.3s"
    assert time.monotonic() - started < 2


async def test_a_failed_step_after_the_put_removes_the_probe(tmp_path):
    region = BrokenGet(tmp_path / "r", name="ca")
    check = await check_region("ca", region, Thresholds())
    assert check.status == CRIT and check.detail.startswith("get: Unavailable")
    assert [i async for i in region.list()] == []


class Aged(LocalRegion):
    """Lists names containing "old" as written more than STALE_PROBE_S ago."""

    async def list(self, prefix=""):
        async for info in super().list(prefix):
            if "old" in info.name:
                info = dataclasses.replace(info, modified=info.modified - timedelta(seconds=STALE_PROBE_S + 60))
            yield info


async def test_old_probes_left_by_a_timed_out_run_are_removed(tmp_path):
    region = Aged(tmp_path / "r", name="ca")
    await region.put(f"{PROBE_PREFIX}old", b"x", {})
    await region.put(f"{PROBE_PREFIX}recent", b"x", {})  # maybe another run's: left alone
    check = await check_region("ca", region, Thresholds())
    assert check.status == OK and check.figures["stale_probes_removed"] == 1, check
    assert [i.name async for i in region.list()] == [f"{PROBE_PREFIX}recent"]


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


class Unreachable:
    async def backlog(self):
        raise ConnectionRefusedError("connection refused")


async def test_an_unreachable_journal_is_crit():
    check = await check_journal(Unreachable(), Thresholds())
    assert check.status == CRIT and check.detail == "ConnectionRefusedError: connection refused"


def test_a_broken_audit_chain_is_crit(tmp_path):
    path = audit_log(tmp_path / "audit.log")
    check, head = check_audit(path)
    assert check.status == OK and head.seq == 3
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    check, head = check_audit(path)
    assert check.status == CRIT and "line 2" in check.detail and head is None
    assert check_audit(tmp_path / "missing.log")[0].status == CRIT


def test_audit_verifies_from_the_checkpoint_and_catches_a_cut(tmp_path):
    path = audit_log(tmp_path / "audit.log")
    _, head = check_audit(path)
    audit_log(path, records=2)  # two more records after the checkpoint
    check, newer = check_audit(path, since=head)
    assert check.status == OK and check.figures["records"] == 3 and newer.seq == 5  # the checkpoint + 2
    path.write_bytes(path.read_bytes()[: head.offset])  # records cut from the end, the checkpoint's too
    check, _ = check_audit(path, since=newer)
    assert check.status == CRIT and "truncated" in check.detail


def test_an_unwritable_audit_log_is_crit(tmp_path):
    path = audit_log(tmp_path / "audit.log")
    path.chmod(0o444)
    try:
        if os.access(path, os.W_OK):  # root ignores modes: make the directory the problem instead
            path.chmod(0o644)
            path.unlink()
            path.mkdir()
        check, _ = check_audit(path)
        assert check.status == CRIT
    finally:
        if path.is_file():
            path.chmod(0o644)


def test_a_locked_or_closed_keyring_is_crit(tmp_path):
    KeyFile.generate(tmp_path / "kek.key")
    keyring = LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True)
    assert check_keyring(keyring).status == OK
    keyring.close()
    check = check_keyring(keyring)
    assert check.status == CRIT and "KeyringLocked" in check.detail
    check = check_keyring(_Locked(WrongPassphrase("wrong key file for keyring x")))
    assert check.status == CRIT and check.detail == "WrongPassphrase: wrong key file for keyring x"


def test_an_unfinished_kek_rotation_is_warn_until_finished(tmp_path):
    KeyFile.generate(tmp_path / "kek.key")
    KeyFile.generate(tmp_path / "kek-2.key")
    keyring = LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True)
    keyring.rotate_kek(KeyFile(tmp_path / "kek-2.key"))
    check = check_keyring(keyring)
    assert check.status == WARN and "rotate --finish" in check.detail
    keyring.finish_rotation()
    assert check_keyring(keyring).status == OK


def test_thresholds_come_from_config_and_flags_override():
    limits = Thresholds.from_config(
        HealthConfig(backlog_warn=5, probe_timeout=3), probe_timeout=None, latency_warn_ms=100.0
    )
    assert limits == Thresholds(probe_timeout=3, latency_warn_ms=100.0, backlog_warn=5, oldest_warn_s=3600.0)


async def test_run_checks_grades_the_worst_and_keeps_the_audit_checkpoint(tmp_path):
    KeyFile.generate(tmp_path / "kek.key")
    keyring = LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True)
    audit = audit_log(tmp_path / "audit.log")
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    regions = {"ca": LocalRegion(tmp_path / "ca", name="ca"), "jp": LocalRegion(tmp_path / "jp", name="jp")}
    key = audit_checkpoint_key("n1", audit)
    checks = await run_checks(regions, keyring, audit, journal, Thresholds(), audit_key=key)
    assert [c.component for c in checks] == ["region:ca", "region:jp", "keyring", "audit", "journal"]
    assert worst(checks) == OK
    seq, _, _ = (await journal.load_checkpoint(key)).split(":")
    assert seq == "3"
    audit_log(audit, records=1)
    checks = await run_checks(regions, keyring, audit, journal, Thresholds(), audit_key=key)
    assert checks[3].detail == "chain verifies from record 3 (2 records)"
    regions["jp"] = FaultyRegion(regions["jp"])
    regions["jp"].down = True
    assert worst(await run_checks(regions, keyring, audit, journal, Thresholds())) == CRIT
    await journal.close()
