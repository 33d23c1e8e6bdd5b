"""Several replicator processes on one PostgreSQL journal (the dev stack's), as real subprocesses.

Regions are two local-driver directories shared by every process. The local
driver is safe across processes: its index is SQLite in WAL mode, every
change one ``BEGIN IMMEDIATE`` transaction, and a put becomes visible only at
that commit. (These tests found one exception, now fixed: opening a region
swept its ``tmp/`` directory, removing other processes' uploads in flight;
now only an opener that is alone sweeps.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keys import KeyFile, LocalKeyring
from regions.local import LocalRegion
from replicator.embedded import ensure
from replicator.hlc import Version
from replicator.journal.postgres import PgJournal, parse_url
from tests.support.pg import connect, drop_schema, fresh_url
from tests.support.seed import path, put_live, put_tomb, state
from tests.support.stack import stack_fixture

REPLICATOR = str(Path(sys.executable).parent / "replicator")
PASSWORD_ENV = "REPLICATOR_TEST_JOURNAL_PASSWORD"
BACKLOG = 5000
LEASE = 3.0


@stack_fixture
async def site(tmp_path):
    """The embedded default's two local regions, with a fresh PostgreSQL journal (password by reference)."""
    url = fresh_url("mp")
    target = parse_url(url)
    config, _ = ensure(tmp_path / "var")
    # The keyring exists before three reconcilers open it at once (each would otherwise create it).
    LocalKeyring.open(config.parent / "keyring.json", KeyFile(config.parent / "kek.key"), create=True).close()
    config.write_text(
        config.read_text().replace(
            'journal = "sqlite:///journal.sqlite3"',
            f'journal = "{target.shown}?schema={target.schema}&password_env={PASSWORD_ENV}"',
        )
    )
    env = dict(os.environ, **{PASSWORD_ENV: target.password.get_secret_value()})
    yield config, url, env
    await drop_schema(url)


def spawn(config: Path, env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [REPLICATOR, *args, "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def seed_backlog(var: Path, url: str) -> list[str]:
    """``BACKLOG`` objects in ``ca`` only, and a ``copy`` row for each, as degraded writes leave them.

    One object is put through the driver; the others are index rows that share
    its data file (a few hundred ms instead of half a minute of fsyncs). The
    copies the workers make are real puts, one file each.
    """
    import sqlite3

    names = sorted(path(f"c{i}", f"n{i}") for i in range(BACKLOG))
    ca = LocalRegion(var / "regions" / "ca", name="ca")
    await put_live(ca, names[0], Version(1_900_000_000_000, 0, "n1"))
    await ca.close()
    db = sqlite3.connect(var / "regions" / "ca" / "index.sqlite3")
    with db:
        db.executemany(
            "INSERT INTO objects (name, file, size, digest, meta, modified) "
            "SELECT ?, file, size, digest, meta, modified FROM objects WHERE name = ?",
            [(n.encode(), names[0].encode()) for n in names[1:]],
        )
    db.close()
    journal = PgJournal(url)
    try:
        await journal.open()
        conn = await connect(url)
        try:  # one statement for 5,000 rows; add() is what the service calls, one row at a time
            await conn.execute(
                "INSERT INTO tasks (kind, name, src, dst, version, created, next_try) "
                "SELECT 'copy', n, 'ca', 'jp', '', extract(epoch from now()), extract(epoch from now()) "
                "FROM unnest($1::text[]) AS n",
                names,
            )
        finally:
            await conn.close()
        assert (await journal.backlog()).pending == BACKLOG
    finally:
        await journal.close()
    return names


async def test_three_workers_drain_a_backlog_exactly_once_when_one_is_killed(site, tmp_path):
    """Three ``replicator work`` processes drain 5,000 copies; one is SIGKILLed midway.

    What "exactly once" means here, and how it is shown:

    * Every journal row is *completed* exactly once. A completion is the
      ``complete`` call that removed the row; the PostgreSQL journal writes it
      to ``completions`` (row id, who completed it, who held its lease, when)
      in the same transaction as the delete. At the end there is one
      completion per seeded row: none twice, none missing.
    * A row the victim had claimed but not completed when it died is
      re-claimed by a survivor only once its lease has lapsed (its completion
      is later than the victim's lease deadline). The survivor may copy that
      object again (if the victim's put had landed, ``copy_newest`` finds the
      destination current and writes nothing); that is allowed, since a copy
      is idempotent, but the row is still completed once.
    * The victim completes nothing after it is killed, and every process did
      part of the work.
    * None lost: the journal is empty and every seeded object is in ``jp``
      with the source's digest and version.
    """
    config, url, env = site
    var = config.parent
    names = await seed_backlog(var, url)
    args = ("work", "--until-empty", "--lease", str(LEASE), "--idle-wait", "0.2", "--concurrency", "8")
    procs = [spawn(config, env, tmp_path / f"work{i}.log", *args) for i in range(3)]
    victim = procs[1]
    victim_owner = f"dev-{socket.gethostname()}-{victim.pid}"  # node_id-host-pid; node_id is the default's
    conn = await connect(url)
    try:
        started = time.monotonic()
        while True:  # midway, and while the victim holds rows
            done = await conn.fetchval("SELECT count(*) FROM completions")
            held = await conn.fetchval("SELECT count(*) FROM tasks WHERE lease_owner = $1", victim_owner)
            if done >= BACKLOG // 3 and held:
                # Freeze it, then look again: a running victim may complete its rows between our
                # look and the kill. A statement it sent just before the freeze still commits.
                victim.send_signal(signal.SIGSTOP)
                await asyncio.sleep(0.3)
                if await conn.fetchval("SELECT count(*) FROM tasks WHERE lease_owner = $1", victim_owner):
                    break
                victim.send_signal(signal.SIGCONT)
            assert time.monotonic() - started < 60, f"no progress: {done} done, victim holds {held}"
            assert victim.poll() is None, (tmp_path / "work1.log").read_text()[-2000:]
            await asyncio.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = await conn.fetchval("SELECT extract(epoch from now())::float8")
        await asyncio.sleep(0.3)  # a claim the victim sent just before dying commits anyway: count it too
        orphans = {
            r["id"]: r["lease_until"]
            for r in await conn.fetch("SELECT id, lease_until FROM tasks WHERE lease_owner = $1", victim_owner)
        }
        assert orphans, "the victim held no rows when it died"

        for i, p in enumerate(procs):
            if p is not victim:
                try:
                    assert p.wait(timeout=60) == 0, (tmp_path / f"work{i}.log").read_text()[-2000:]
                except subprocess.TimeoutExpired:
                    pytest.fail(f"worker {i} did not drain the backlog within 60 s")
        assert victim.returncode == -signal.SIGKILL

        assert await conn.fetchval("SELECT count(*) FROM tasks") == 0
        completions = await conn.fetch("SELECT task_id, name, owner, lease_owner, done_at FROM completions")
        per_row: dict[int, int] = {}
        for c in completions:
            per_row[c["task_id"]] = per_row.get(c["task_id"], 0) + 1
        assert len(completions) == BACKLOG and set(per_row.values()) == {1}, "a row was completed twice"
        assert sorted(c["name"] for c in completions) == names
        by_owner: dict[str, int] = {}
        for c in completions:
            by_owner[c["owner"]] = by_owner.get(c["owner"], 0) + 1
        assert len(by_owner) == 3 and by_owner[victim_owner] > 0, by_owner
        assert max(c["done_at"] for c in completions if c["owner"] == victim_owner) <= killed_at
        for c in completions:
            if c["task_id"] in orphans:
                assert c["owner"] != victim_owner and c["done_at"] >= orphans[c["task_id"]], dict(c)
    finally:
        await conn.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    ca, jp = LocalRegion(var / "regions" / "ca", name="ca"), LocalRegion(var / "regions" / "jp", name="jp")
    try:
        want, got = await state(ca), await state(jp)
    finally:
        await ca.close()
        await jp.close()
    assert len(got) == BACKLOG and got == want


async def seed_divergence(var: Path) -> dict[str, set[str]]:
    """Two regions that disagree on 400 of 600 names, in every way a night's reconcile fixes."""
    now = time.time_ns() // 1_000_000
    old, new = Version(now - 60_000, 0, "n1"), Version(now - 1_000, 0, "n1")
    ca, jp = LocalRegion(var / "regions" / "ca", name="ca"), LocalRegion(var / "regions" / "jp", name="jp")
    kinds = {"same": set(), "ca_only": set(), "jp_only": set(), "stale_jp": set(), "deleted_in_ca": set()}
    plan = [("same", 200), ("ca_only", 150), ("jp_only", 150), ("stale_jp", 50), ("deleted_in_ca", 50)]
    sem = asyncio.Semaphore(16)

    async def one(kind: str, name: str):
        async with sem:
            if kind == "same":
                body = await put_live(ca, name, new)
                await put_live(jp, name, new, body)
            elif kind == "ca_only":
                await put_live(ca, name, new)
            elif kind == "jp_only":
                await put_live(jp, name, new)
            elif kind == "stale_jp":
                await put_live(ca, name, new)
                await put_live(jp, name, old)
            else:
                await put_tomb(ca, name, new)
                await put_live(jp, name, old)

    try:
        jobs = []
        for kind, count in plan:
            for i in range(count):
                name = path(f"{kind}{i}", "n")
                kinds[kind].add(name)
                jobs.append(one(kind, name))
        await asyncio.gather(*jobs)
    finally:
        await ca.close()
        await jp.close()
    return kinds


def reconcile_all(config: Path, env: dict, tmp_path: Path, night: str) -> list[tuple[int, dict, str]]:
    """``replicator reconcile --partition i/3`` for i = 1..3, three processes at once."""
    procs = []
    for i in (1, 2, 3):
        report = tmp_path / f"{night}-{i}.json"
        procs.append(
            (
                report,
                tmp_path / f"{night}-{i}.log",
                spawn(
                    config,
                    env,
                    tmp_path / f"{night}-{i}.log",
                    "reconcile",
                    "--partition",
                    f"{i}/3",
                    "--report",
                    str(report),
                    "--concurrency",
                    "8",
                ),
            )
        )
    out = []
    for report, log, p in procs:
        try:
            code = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail(f"{report.stem} did not finish within 60 s")
        out.append((code, json.loads(report.read_text()), log.read_text()))
    return out


async def test_reconcile_partitions_as_processes_finish_the_night_and_never_run_twice(site, tmp_path):
    """Three ``reconcile --partition i/3`` processes at once level two divergent regions together.

    The partitions are disjoint (each divergent name is acted on by exactly
    one of them) and together cover everything: afterwards the regions agree,
    and the next night's three runs plan nothing. A partition whose lease is
    held by a live runner elsewhere does not start (exit 2), and runs once
    that lease is given up.
    """
    config, url, env = site
    var = config.parent
    kinds = await seed_divergence(var)
    divergent = set().union(*(names for kind, names in kinds.items() if kind != "same"))

    first = reconcile_all(config, env, tmp_path, "night1")
    acted: list[str] = []
    for code, report, log in first:
        assert code == 0 and report["error_count"] == 0, (report, log[-2000:])
        assert not report["actions_truncated"]
        acted += [a["name"] for a in report["actions"]]
    assert sorted(acted) == sorted(divergent), "each divergent name is acted on by exactly one partition"
    assert sum(1 for _, report, _ in first if report["actions"]) == 3  # every partition had its share

    ca, jp = LocalRegion(var / "regions" / "ca", name="ca"), LocalRegion(var / "regions" / "jp", name="jp")
    try:
        assert await state(ca) == await state(jp)
    finally:
        await ca.close()
        await jp.close()

    journal = PgJournal(url)
    try:  # a runner on another host holds partition 2 (the lease the CLI takes is per scope)
        assert await journal.acquire_lease("reconcile:v1/@2/3", "elsewhere", 600)
        second = reconcile_all(config, env, tmp_path, "night2")
        for i, (code, report, log) in enumerate(second, start=1):
            if i == 2:
                assert code == 2 and "another runner holds the lease on v1/@2/3" in log, log[-2000:]
            else:
                assert code == 0 and report["counts"] == {} and report["names"] > 0, report
        await journal.release_lease("reconcile:v1/@2/3", "elsewhere")
        rerun = spawn(
            config,
            env,
            tmp_path / "night2-2b.log",
            "reconcile",
            "--partition",
            "2/3",
            "--report",
            str(tmp_path / "night2-2b.json"),
        )
        assert rerun.wait(timeout=60) == 0
        report = json.loads((tmp_path / "night2-2b.json").read_text())
        assert report["counts"] == {} and report["names"] > 0, report
        assert await journal.load_checkpoint("reconcile:v1/@2/3") is None  # walked whole: nothing to resume
    finally:
        await journal.close()
