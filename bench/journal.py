"""Benchmark: journal throughput, rows/s claimed and completed, on SQLite and PostgreSQL.

    .venv/bin/python bench/journal.py [--rows 5000] [--workers 1,2,4] [--batch 32]

Prints a table and writes ``bench/results/journal.json``. Figures, not a
pass/fail test. Each run seeds ``--rows`` due ``copy`` rows, then ``N``
workers each loop ``claim(limit=batch)`` and ``complete`` every row claimed
(what ``replicator.replication.workers.Workers`` does, minus the region calls) until
nothing is left. rows/s = rows / wall time from the start signal to the last
worker finding the journal empty; each figure is the best of ``--repeats``
runs (the median beside it): the machine is shared and its neighbours' load
swings single runs. Two ways to run ``N`` workers:

* ``processes``: N processes, each with its own journal object (for PostgreSQL
  its own connection pool), released together once all have connected. This
  is how several replicator processes share a PostgreSQL journal. For SQLite
  it is N processes on one database file (WAL; each commit takes the file's
  write lock), shown for comparison: the embedded journal is meant for one
  process.
* ``tasks``: N asyncio tasks in one process sharing one journal object (how
  the service's workers use it).

Seeding is not measured (one bulk insert). The SQLite journal commits with
``synchronous=FULL`` (an fsync per transaction); PostgreSQL is the dev stack's
server with its defaults (``fsync`` on, ``synchronous_commit`` on), on the
same machine, over loopback TCP. PostgreSQL needs the dev stack
(``REPLICATOR_TEST_PG_DSN``, as ``make bench`` sets it); each run uses a fresh
schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from replicator.journal import open_journal
from replicator.journal.postgres import PgJournal, parse_url

RESULTS = ROOT / "bench" / "results" / "journal.json"


async def drain(journal, owner: str, batch: int) -> int:
    """Claim and complete until nothing is due; return how many rows this worker completed."""
    done = 0
    while tasks := await journal.claim(owner, limit=batch, lease=300):
        for task in tasks:
            done += await journal.complete(task)
    return done


async def seed(url: str, rows: int) -> None:
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        open_journal(url)  # creates the schema
        with db:
            db.executemany(
                "INSERT INTO tasks (kind, name, src, dst, version, created, next_try) "
                "VALUES ('copy', ?, 'ca', 'jp', '', 0, 0)",
                [(f"v1/bench/{i:08d}",) for i in range(rows)],
            )
        db.close()
        return
    import asyncpg

    journal = PgJournal(url)
    await journal.open()  # migrations
    await journal.close()
    target = parse_url(url)
    conn = await asyncpg.connect(
        target.dsn,
        password=target.password.get_secret_value() if target.password else None,
        server_settings={"search_path": target.schema},
    )
    try:
        await conn.execute(
            "INSERT INTO tasks (kind, name, src, dst, version, created, next_try) "
            "SELECT 'copy', 'v1/bench/' || lpad(i::text, 8, '0'), 'ca', 'jp', '', 0, 0 "
            "FROM generate_series(1, $1) AS i",
            rows,
        )
    finally:
        await conn.close()


async def drop_schema(url: str) -> None:
    import asyncpg

    target = parse_url(url)
    conn = await asyncpg.connect(target.dsn, password=target.password.get_secret_value() if target.password else None)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        await conn.close()


def child(url: str, owner: str, batch: int) -> None:
    """One worker process: connect, say "ready", wait for "go", drain, print what it did."""

    async def run():
        journal = open_journal(url)
        await journal.backlog()  # connected (PostgreSQL: pool open, migrations checked)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.perf_counter()
        done = await drain(journal, owner, batch)
        print(json.dumps({"done": done, "seconds": time.perf_counter() - started}), flush=True)
        await journal.close()

    asyncio.run(run())


def run_processes(url: str, workers: int, batch: int) -> tuple[float, int]:
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", url, f"w{i}", str(batch)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a worker did not start: {line!r}")
    started = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    done = 0
    for p in procs:
        done += json.loads(p.stdout.readline())["done"]
        p.wait()
    return time.perf_counter() - started, done


async def run_tasks(url: str, workers: int, batch: int) -> tuple[float, int]:
    journal = open_journal(url)
    await journal.backlog()
    started = time.perf_counter()
    done = sum(await asyncio.gather(*(drain(journal, f"w{i}", batch) for i in range(workers))))
    seconds = time.perf_counter() - started
    await journal.close()
    return seconds, done


def one(backend: str, mode: str, workers: int, rows: int, batch: int, workdir: Path) -> dict:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'journal-{secrets.token_hex(4)}.sqlite3'}"
    else:
        dsn = os.environ.get("REPLICATOR_TEST_PG_DSN")
        if not dsn:
            raise SystemExit(
                "PostgreSQL is not available: REPLICATOR_TEST_PG_DSN is unset "
                '(run under the dev stack: `make bench`, or eval "$(deploy/dev/stack env)")'
            )
        url = f"{dsn}?schema=bench_{secrets.token_hex(4)}"
    try:
        asyncio.run(seed(url, rows))
        if mode == "processes":
            seconds, done = run_processes(url, workers, batch)
        else:
            seconds, done = asyncio.run(run_tasks(url, workers, batch))
        if done != rows:
            raise SystemExit(f"{backend} {mode} x{workers}: completed {done} of {rows} rows")
    finally:
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        else:
            asyncio.run(drop_schema(url))
    return {
        "backend": backend,
        "mode": mode,
        "workers": workers,
        "rows": rows,
        "batch": batch,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--batch", type=int, default=32, help="rows per claim (Workers: concurrency x 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--modes", default="processes,tasks")
    parser.add_argument("--child", nargs=3, metavar=("URL", "OWNER", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, owner, batch = args.child
        return child(url, owner, int(batch))

    out = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": args.rows,
        "batch": args.batch,
        "repeats": args.repeats,
        "results": [],
    }
    print(
        f"{'journal':10} {'workers as':10} {'workers':>7} {'rows':>7} {'best s':>7} {'rows/s':>8} {'median rows/s':>13}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                for n in (int(w) for w in args.workers.split(",")):
                    runs = [one(backend, mode, n, args.rows, args.batch, Path(tmp)) for _ in range(args.repeats)]
                    runs.sort(key=lambda r: r["seconds"])
                    r = {
                        **runs[0],
                        "median_rows_per_s": runs[len(runs) // 2]["rows_per_s"],
                        "all_seconds": [x["seconds"] for x in runs],
                    }
                    out["results"].append(r)
                    print(
                        f"{backend:10} {mode:10} {n:>7} {r['rows']:>7} {r['seconds']:>7.2f} "
                        f"{r['rows_per_s']:>8,} {r['median_rows_per_s']:>13,}",
                        flush=True,
                    )
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
