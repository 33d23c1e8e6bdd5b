"""What the nightly reconcile removed, kept durably: one report file per run (never overwritten), one
audit record per object removed from a region (tags only) and one per run naming its kept report."""

import json
import os

import pytest
from click.testing import CliRunner

from keys import AuditLog, KeyFile, LocalKeyring
from keys.audit import verify
from replicator.cli import main
from replicator.embedded import ensure
from replicator.reconcile.report import keep, kept_name
from tests.unit.reconcile.test_cli import seed


@pytest.fixture
def var(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True) as keyring:
        AuditLog.open(var / "audit.log", keyring.audit_key()).close()  # the node's, as serve leaves it
    return var


def run(var, *args):
    result = CliRunner().invoke(main, ["reconcile", "--config", str(var / "replicator.toml"), *args])
    assert result.exit_code in (0, 1, 2), result.output
    return result.exit_code, json.loads(result.stdout)


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_runs_leave_two_kept_reports_and_the_removals_in_the_audit_chain(var):
    names = seed(var)
    code, first = run(var)
    assert code == 0, first
    code, second = run(var)
    assert code == 0 and second["counts"] == {}
    kept = sorted((var / "reconcile-reports").iterdir())
    assert [p.name for p in kept] == sorted(f"reconcile-{r['report_id']}.json" for r in (first, second))
    assert {json.loads(p.read_text())["report_id"] for p in kept} == {first["report_id"], second["report_id"]}
    assert oct(kept[0].stat().st_mode & 0o777) == "0o640"

    # Each run's own chain, named as its report (the service's audit.log is never touched).
    logs = [var / f"audit-reconcile-{r['report_id']}.log" for r in (first, second)]
    assert sorted(var.glob("audit-reconcile-*.log")) == sorted(logs)
    found = records(logs[0]) + records(logs[1])
    removed = [(r["action"], r["outcome"]) for r in found if r["action"] != "reconcile.run"]
    # delete: a tombstone over jp's older live replica; expire: jp's visit; shred: both regions' copies.
    assert sorted(removed) == sorted(
        [
            ("reconcile.delete", "removed:jp"),
            ("reconcile.expire", "removed:jp"),
            ("reconcile.shred", "removed:ca"),
            ("reconcile.shred", "removed:jp"),
        ]
    )
    expire = next(r for r in found if r["action"] == "reconcile.expire")
    _, ctag, data_class, ntag = names["expire"].split("/")
    assert (expire["customer_tag"], expire["class"], expire["name_tag"]) == (ctag, data_class, ntag)
    runs = [r["outcome"] for r in found if r["action"] == "reconcile.run"]
    assert runs == [f"exit-0:report-{first['report_id']}", f"exit-0:report-{second['report_id']}"]
    assert all(verify(log).ok for log in logs)
    verified = CliRunner().invoke(main, ["audit", "verify", "--config", str(var / "replicator.toml")])
    assert verified.exit_code == 0, verified.output
    for r, log in zip((first, second), logs, strict=True):  # each shipped by its run, under its own name
        n = len(records(log))
        assert f"node dev-reconcile-{r['report_id']}: every region holds records 1-{n}" in verified.output


def test_a_dry_run_keeps_its_report_and_records_nothing(var):
    seed(var)
    code, report = run(var, "--dry-run")
    assert code == 0
    assert (var / "reconcile-reports" / f"reconcile-{report['report_id']}.json").is_file()
    assert not list(var.glob("audit-reconcile*.log"))


def test_a_partition_keeps_a_chain_of_its_own(var):
    seed(var)
    code, report = run(var, "--partition", "2/2")
    assert code == 0
    assert "-2of2-" in report["report_id"] and (var / f"audit-reconcile-{report['report_id']}.log").is_file()


def test_a_run_whose_audit_log_is_held_too_long_does_not_run(var, monkeypatch):
    import sys

    import replicator.cli.operator_audit as operator_audit

    reconcile_command = sys.modules["replicator.cli.reconcile"]  # the package's `reconcile` is the command
    seed(var)
    monkeypatch.setattr(operator_audit, "OPEN_WAIT", 0.3)
    monkeypatch.setattr(reconcile_command, "kept_name", lambda *_: "20261206t023000z-1of1-000000")
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key")) as keyring:
        holder = AuditLog.open(var / "audit-reconcile-20261206t023000z-1of1-000000.log", keyring.audit_key())
    try:
        code, report = run(var)
    finally:
        holder.close()
    assert code == 2 and "AuditBusy" in report["error"]
    assert (var / "reconcile-reports" / f"reconcile-{report['report_id']}.json").is_file()  # kept all the same


def test_a_kept_report_is_never_overwritten(tmp_path):
    report_id = kept_name(0.0, (1, 1))
    assert report_id.startswith("19700101t000000z-1of1-") and report_id == report_id.lower()
    keep({"n": 1}, tmp_path, report_id)
    with pytest.raises(FileExistsError):
        keep({"n": 2}, tmp_path, report_id)
    assert json.loads((tmp_path / f"reconcile-{report_id}.json").read_text()) == {"n": 1}
    assert len(os.listdir(tmp_path)) == 1


async def test_a_removal_whose_record_fails_stops_the_run_before_the_next_removal(tmp_path):
    from keys import AuditUnavailable
    from regions.local import LocalRegion
    from replicator.hlc import Version
    from replicator.reconcile import Reconciler
    from tests.support.seed import DAY_MS, path, put_live, state

    now = 1_900_000_000_000
    a, b = LocalRegion(tmp_path / "ca", name="ca"), LocalRegion(tmp_path / "jp", name="jp")
    old = path("c1", "old-visit", "visit")
    for region in (a, b):
        await put_live(region, old, Version(now - 100 * DAY_MS, 0, "n1"), data_class="visit")
    told = []

    async def refuse(action, region):
        told.append((action.kind, region))
        raise AuditUnavailable("disk full")

    try:
        report = await Reconciler(
            a, b, now_ms=now, retention={"visit": 90}, destroyed=set(), grace_ms=0, on_removed=refuse
        ).run(["v1/"])
        assert told == [("expire", "jp")]  # the other region's replica first; the winner is left
        assert report.stopped == "audit-failed" and report.error_count == 1
        assert "audit record was not written (AuditUnavailable)" in report.errors[0]["error"]
        assert report.counts["expire"] == {"planned": 2, "done": 1, "skipped": 1, "failed": 0}
        assert old in await state(a) and old not in await state(b)
    finally:
        await a.close()
        await b.close()
