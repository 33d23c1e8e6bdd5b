"""Benchmark: what ``replicator.client`` costs a backend service, against a bare aiohttp client.

    .venv/bin/python bench/client.py [--quick] [--rounds N]

One ``replicator serve`` on the embedded default's two local regions (a temp
dir; no dev stack needed). In one run, interleaved, best of ``--rounds``, the
same operations go through bench/api.py's bare aiohttp calls (what the other
benches measure the service with) and through :class:`replicator.client.AsyncClient`
(aiohttp, typed errors, retries): 4 KiB PUT and GET at concurrency 32, and a
64 MiB streamed upload and download at concurrency 2. The client's figure over
the bare one is its overhead; the goal is ops/s and MB/s within 20% (ratio
>= 0.8). Prints a table, with each side's client-process CPU per operation
(steadier than the wall-time ratio on a shared machine), and writes
``bench/results/client.json``. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import CUSTOMER, DATA_CLASS, PURPOSE, Api, Run, Server, _session, timed, write_config

from replicator.client import AsyncClient
from replicator.embedded import LOCAL_REGIONS

MiB, KiB = 1 << 20, 1 << 10
RESULTS = Path(__file__).resolve().parent / "results" / "client.json"
RATIO = 0.8  # the client's ops/s or MB/s over the bare client's


class Through:
    """The four operations through the typed client, under the same names bench/api.py's ``Api`` uses."""

    def __init__(self, client: AsyncClient, tag: str):
        self.client, self.tag = client, tag

    async def put(self, name: str, body: bytes) -> None:
        result = await self.client.put(CUSTOMER, DATA_CLASS, f"{self.tag}/{name}", body)
        if result.replication != "complete":
            raise RuntimeError(f"PUT {name}: {result.replication}")

    async def get(self, name: str, expect: bytes | None, size: int) -> None:
        async with self.client.open(CUSTOMER, DATA_CLASS, f"{self.tag}/{name}", purpose=PURPOSE) as download:
            n = 0
            async for chunk in download.iter_bytes(MiB):
                if expect is not None and chunk != expect[n : n + len(chunk)]:
                    raise RuntimeError(f"GET {name}: body differs at byte {n}")
                n += len(chunk)
        if n != size:
            raise RuntimeError(f"GET {name}: {n} bytes, expected {size}")


async def phases(api, server: Server, small: list[bytes], big: bytes, quick: bool) -> dict[str, Run]:
    count, big_count = (200, 2) if quick else (1000, 4)
    for i in range(4):  # warm-up: data key, connection pool
        await api.put(f"warm-{i}", small[i])
        await api.get(f"warm-{i}", small[i], len(small[i]))
    return {
        "put_small": await timed("PUT", count, 4 * KiB, 32, lambda i: api.put(f"s-{i}", small[i]), server=server),
        "get_small": await timed(
            "GET", count, 4 * KiB, 32, lambda i: api.get(f"s-{i}", small[i], 4 * KiB), server=server
        ),
        "put_big": await timed("PUT", big_count, len(big), 2, lambda i: api.put(f"b-{i}", big), server=server),
        "get_big": await timed(
            "GET", big_count, len(big), 2, lambda i: api.get(f"b-{i}", None, len(big)), server=server
        ),
    }


async def main_async(args: argparse.Namespace) -> dict:
    small = [os.urandom(4 * KiB) for _ in range(1000)]
    big = os.urandom(64 * MiB)
    best: dict[str, dict[str, Run]] = {"bare": {}, "client": {}}
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        config, token = write_config(Path(tmp) / "service", LOCAL_REGIONS)
        server = Server(config, {})
        try:
            async with _session(32) as session:
                await server.ready(session)
                async with AsyncClient(server.url, token, timeout=900) as client:
                    for _ in range(args.rounds):
                        tag = uuid.uuid4().hex[:8]
                        for label, api in (
                            ("bare", Api(session, server, token, f"bare-{tag}")),
                            ("client", Through(client, f"client-{tag}")),
                        ):
                            for op, run in (await phases(api, server, small, big, args.quick)).items():
                                if op not in best[label] or run.wall_s < best[label][op].wall_s:
                                    best[label][op] = run
        except BaseException:
            print(server.tail(), file=sys.stderr)
            raise
        finally:
            server.stop()
    checks = []
    for op in ("put_small", "get_small", "put_big", "get_big"):
        bare, through = best["bare"][op], best["client"][op]
        unit = "ops_s" if op.endswith("small") else "mb_s"
        ratio = getattr(through, unit) / getattr(bare, unit)
        checks.append({"op": op, "unit": unit, "ratio": round(ratio, 3), "goal": RATIO, "pass": ratio >= RATIO})
    return {
        "runs": {label: {op: run.summary() for op, run in runs.items()} for label, runs in best.items()},
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer objects: a smoke run")
    parser.add_argument("--rounds", type=int, default=2, help="best of N rounds, interleaved (default 2)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    # The client process's CPU per operation does not depend on what else the machine runs (the wall-time
    # ratio does: a shared machine's other load can take either side's CPUs).
    print(f"{'op':<10} {'bare':>12} {'client':>12}  ratio  goal   client CPU ms/op: bare client")
    for check in results["checks"]:
        op, unit = check["op"], check["unit"]
        bare_run, client_run = results["runs"]["bare"][op], results["runs"]["client"][op]
        bare, through = bare_run[unit], client_run[unit]
        verdict = "PASS" if check["pass"] else "MISS"
        cpu = [1000 * run["client_cpu_s"] / run["count"] for run in (bare_run, client_run)]
        print(
            f"{op:<10} {bare:>9.1f} {unit[:-2]:<2} {through:>9.1f} {unit[:-2]:<2} {check['ratio']:5.2f}  {verdict}"
            f"   {cpu[0]:8.2f} {cpu[1]:6.2f}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
