"""`replicator reconcile` on the embedded default: report, exit codes, the keyring's destroyed keys."""

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from keys import KeyFile, LocalKeyring
from regions.local import LocalRegion
from replicator.cli import main
from replicator.embedded import ensure
from replicator.hlc import Version
from replicator.journal.sqlite import SqliteJournal
from tests.support.seed import DAY_MS, path, put_live, put_tomb, state


@pytest.fixture
def var(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    return var


def seed(var) -> dict[str, str]:
    now = time.time_ns() // 1_000_000
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True) as keyring:
        dek = keyring.get_or_create_dek("erased-customer").dek_id
        keyring.destroy("erased-customer")

    async def go():
        ca, jp = LocalRegion(var / "regions/ca", name="ca"), LocalRegion(var / "regions/jp", name="jp")
        names = {
            "copy": path("c", "missing"),
            "delete": path("c", "deleted"),
            "expire": path("c", "visit", "visit"),
            "shred": path("erased-customer", "x"),
        }
        await put_live(ca, names["copy"], Version(now - 1000, 0, "n1"))
        await put_live(jp, names["delete"], Version(now - 2000, 0, "n1"))
        await put_tomb(ca, names["delete"], Version(now - 1000, 0, "n1"))
        await put_live(jp, names["expire"], Version(now - 100 * DAY_MS, 0, "n1"), data_class="visit")
        await put_live(ca, names["shred"], Version(now - 1000, 0, "n1"), dek=dek)
        await put_live(jp, names["shred"], Version(now - 1000, 0, "n1"), dek=dek)
        await ca.close()
        await jp.close()
        return names

    return asyncio.run(go())


def run(var, *args):
    result = CliRunner().invoke(main, ["reconcile", "--config", str(var / "replicator.toml"), *args])
    return result.exit_code, result


def test_dry_run_then_run_then_nothing(var, tmp_path):
    names = seed(var)
    code, result = run(var, "--dry-run")
    assert code == 0, result.output
    report = json.loads(result.stdout)
    planned = {(a["action"], a["name"]) for a in report["actions"]}
    assert planned == {
        ("copy", names["copy"]),
        ("delete", names["delete"]),
        ("expire", names["expire"]),
        ("shred", names["shred"]),
    }
    assert report["counts"]["shred"]["planned"] == 2 and report["dry_run"]

    out = tmp_path / "report.json"
    code, result = run(var, "--report", str(out), "--concurrency", "2")
    report = json.loads(out.read_text())
    assert code == 0 and report["exit_code"] == 0 and report["error_count"] == 0, report
    assert {k: v["done"] for k, v in report["counts"].items()} == {"copy": 1, "delete": 1, "expire": 1, "shred": 2}

    async def states():
        ca, jp = LocalRegion(var / "regions/ca", name="ca"), LocalRegion(var / "regions/jp", name="jp")
        try:
            return await state(ca), await state(jp)
        finally:
            await ca.close()
            await jp.close()

    ca, jp = asyncio.run(states())
    assert ca == jp and set(ca) == {names["copy"], names["delete"]}

    code, result = run(var)
    again = json.loads(result.stdout)
    assert code == 0 and again["counts"] == {} and again["names"] == 2


def test_failures_exit_1_and_are_listed(var):
    async def conflict():
        ca, jp = LocalRegion(var / "regions/ca", name="ca"), LocalRegion(var / "regions/jp", name="jp")
        v = Version(time.time_ns() // 1_000_000, 0, "n1")
        await put_live(ca, path("c", "n"), v)
        await put_tomb(jp, path("c", "n"), v)
        await ca.close()
        await jp.close()

    asyncio.run(conflict())
    code, result = run(var)
    report = json.loads(result.stdout)
    assert code == 1 and report["errors"][0]["action"] == "conflict"
    assert report["errors"][0]["name"] == path("c", "n")


def test_cannot_run_exits_2(var, tmp_path):
    async def hold():
        journal = SqliteJournal(var / "journal.sqlite3")
        await journal.acquire_lease("reconcile:v1/@2/4", "another-runner", 600)
        await journal.close()

    asyncio.run(hold())
    code, result = run(var, "--partition", "2/4")
    assert code == 2 and "lease" in result.stderr
    assert run(var, "--partition", "1/4")[0] == 0
    assert run(var, "--partition", "5/4")[0] == 2
    assert run(var, "--prefix", "elsewhere/")[0] == 2
    missing = CliRunner().invoke(main, ["reconcile", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2


def test_a_region_down_at_start_exits_2(var):
    config = var / "replicator.toml"
    config.write_text(config.read_text().replace('path = "regions/jp"', 'path = "/dev/null/jp"'))
    code, result = run(var)
    assert code == 2 and "'jp' is not available" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_progress_bar_renders(var):
    seed(var)
    code, result = run(var, "--progress", "--dry-run")
    assert code == 0 and "names" in result.stderr and "ETA" in result.stderr


def test_metrics_file_records_each_run_for_the_textfile_collector(var, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    seed(var)
    prom = tmp_path / "textfile" / "replicator_reconcile.prom"

    def figures() -> dict[str, float]:  # "name" or "name{k=v,…}"
        found = {}
        for family in text_string_to_metric_families(prom.read_text()):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return found

    args = ["reconcile", "--var", str(var), "--metrics-file", str(prom), "--report", str(tmp_path / "r.json")]
    assert CliRunner().invoke(main, args).exit_code == 0
    clean = figures()
    assert clean["replicator_reconcile_exit_code"] == 0
    assert clean["replicator_reconcile_last_success_timestamp_seconds"] == pytest.approx(time.time(), abs=60)
    assert clean["replicator_reconcile_actions{kind=copy,outcome=done}"] >= 1
    assert clean["replicator_kek_rotation_unfinished"] == 0

    (var / "kek.key").write_bytes(b"\0" * 32)  # a KEK that cannot open the keyring: the run cannot start
    assert CliRunner().invoke(main, args).exit_code == 2
    failed = figures()
    assert failed["replicator_reconcile_exit_code"] == 2
    assert (
        failed["replicator_reconcile_last_success_timestamp_seconds"]
        == clean["replicator_reconcile_last_success_timestamp_seconds"]
    )
