"""Benchmark: a 3-node cluster beside a single node, on the same Azurite + Swift, same run.

    cd /work/main && eval "$(deploy/dev/stack env)"
    .venv/bin/python bench/cluster.py [--quick] [--rounds N]

Prints a table and writes ``bench/results/cluster.json``. Three set-ups serve one Azurite
container and one Swift container made for the run (deleted afterwards):

* **single**: one ``replicator serve`` on the embedded kinds of state (key-file keyring, SQLite
  journal), as ``bench/api.py`` runs it;
* **cluster-1**: one node of ``deploy/dev/cluster`` (PostgreSQL journal and key store, cluster name
  locks): what the shared state costs alone;
* **cluster-3**: three such nodes, the clients spread round-robin over them.

Each phase is 4 KiB PUTs, then GETs of them, at concurrency 32 (``bench/api.py``'s client and
timing). Rounds are interleaved; the table uses each phase's lowest p50. Goal: the cluster's p50
<= 1.3 x the single node's, for PUT and GET. All three share this machine's CPUs with the stack
(``nproc`` is printed): three nodes on two CPUs measure the shared state's cost, not scale-out;
"CPU ms/op" is the whole machine's busy CPU per operation (nodes, PostgreSQL, Azurite, Swift).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import types
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import (
    AZURE_ENV,
    ROOT,
    Api,
    Run,
    Server,
    Sizes,
    _session,
    cloud_cleanup,
    cloud_from_env,
    cloud_regions,
    cloud_setup,
    timed,
    write_config,
)

GOAL = 1.3
CLUSTER = ROOT / "deploy" / "dev" / "cluster"


class Nodes:
    """The cluster script's nodes for this run: its own name (schemas), ports and the run's containers."""

    def __init__(self, cloud, count: int):
        self.name = f"bench-{secrets.token_hex(4)}"
        self.count = count
        self.port_base = 19700 + secrets.randbelow(50) * 10
        self.env = {
            **os.environ,
            "CLUSTER_NAME": self.name,
            "CLUSTER_PORT_BASE": str(self.port_base),
            "CLUSTER_CA_CONTAINER": cloud.container,
            "CLUSTER_JP_CONTAINER": cloud.container,
        }

    def run(self, *args: str) -> None:
        subprocess.run([sys.executable, str(CLUSTER), *args], env=self.env, check=True, capture_output=True)

    def up(self) -> list[types.SimpleNamespace]:
        self.run("up", str(self.count))
        return [types.SimpleNamespace(url=f"http://127.0.0.1:{self.port_base + i}") for i in range(1, self.count + 1)]

    @property
    def token(self) -> str:
        stack_dir = os.environ.get("REPLICATOR_TEST_STACK_DIR") or str(ROOT / ".devstack")
        return (Path(stack_dir) / self.name / "token").read_text().strip()

    def down(self) -> None:
        self.run("down")


async def phases(servers, token: str, bodies: list[bytes], sizes: Sizes) -> dict[str, Run]:
    """4 KiB PUTs then GETs, request i to server i mod n."""
    async with _session(sizes.small_concurrency) as session:
        tag = f"bench-{uuid.uuid4().hex[:8]}"
        apis = [Api(session, s, token, tag) for s in servers]
        for i, api in enumerate(apis):  # warm-up: data key, Keystone token, connection pools
            await api.put(f"warm-{i}", bodies[i])
            await api.get(f"warm-{i}", bodies[i], sizes.small)
        n, c = sizes.small_cloud_count, sizes.small_concurrency
        put = await timed("PUT", n, sizes.small, c, lambda i: apis[i % len(apis)].put(f"s-{i:05d}", bodies[i]))
        get = await timed(
            "GET", n, sizes.small, c, lambda i: apis[(i + 1) % len(apis)].get(f"s-{i:05d}", bodies[i], sizes.small)
        )
    return {"put": put, "get": get}


async def main_async(args) -> dict:
    sizes = Sizes(small_cloud_count=150 if args.quick else 600)
    bodies = [os.urandom(sizes.small) for _ in range(sizes.small_cloud_count)]
    cloud = cloud_from_env(f"bench-cluster-{uuid.uuid4().hex[:10]}")
    runs: dict[str, dict[str, list[Run]]] = {"single": {}, "cluster-1": {}, "cluster-3": {}}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        await cloud_setup(cloud)
        config, token = write_config(Path(tmp) / "single", cloud_regions(cloud))
        single = Server(config, {AZURE_ENV: cloud.connection_string})
        one, three = Nodes(cloud, 1), Nodes(cloud, 3)
        setups = {
            "single": (lambda: [single], lambda: None, lambda: token),
            "cluster-1": (one.up, one.down, lambda: one.token),
            "cluster-3": (three.up, three.down, lambda: three.token),
        }
        try:
            async with _session(8) as s:
                await single.ready(s)
            for r in range(args.rounds):
                for label, (start, stop, token_of) in setups.items():
                    servers = start()
                    try:
                        got = await phases(servers, token_of(), bodies, sizes)
                    finally:
                        stop()
                    for k, v in got.items():
                        runs[label].setdefault(k, []).append(v)
                    print(
                        f"round {r + 1} {label}: PUT p50 {got['put'].pct(0.5) * 1e3:.1f} ms, "
                        f"GET p50 {got['get'].pct(0.5) * 1e3:.1f} ms",
                        file=sys.stderr,
                    )
        finally:
            single.stop()
            for nodes in (one, three):
                try:
                    nodes.down()
                except subprocess.CalledProcessError:
                    pass
            await cloud_cleanup(cloud)
    return runs


def report(runs: dict) -> dict:
    best = {label: {k: min(v, key=lambda r: r.pct(0.5)) for k, v in phases.items()} for label, phases in runs.items()}
    rows = []
    print(f"\n4 KiB at concurrency 32 on Azurite + Swift, {os.cpu_count()} CPUs (best round of each)")
    print(f"{'set-up':<11} {'op':<4} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x single p50':>13} {'CPU ms/op':>10}")
    for label, phases in best.items():
        for op, run in phases.items():
            ratio = run.pct(0.5) / best["single"][op].pct(0.5)
            rows.append({"setup": label, "op": op, **run.summary(), "p50_vs_single": round(ratio, 2)})
            p50, p99 = run.pct(0.5) * 1e3, run.pct(0.99) * 1e3
            cpu = (run.machine_cpu_s or 0) / run.count * 1e3  # every process: nodes, PostgreSQL, the clouds
            print(f"{label:<11} {op:<4} {run.ops_s:>8.0f} {p50:>8.1f} {p99:>8.1f} {ratio:>13.2f} {cpu:>10.1f}")
    checks = [
        {
            "target": f"cluster-3 {op} p50 <= {GOAL} x single",
            "ratio": r["p50_vs_single"],
            "ok": r["p50_vs_single"] <= GOAL,
        }
        for r in rows
        for op in [r["op"]]
        if r["setup"] == "cluster-3"
    ]
    for c in checks:
        print(f"{'PASS' if c['ok'] else 'MISS'}  {c['target']}: {c['ratio']}")
    return {
        "rows": rows,
        "checks": checks,
        "rounds": {k: {op: [r.summary() for r in v] for op, v in p.items()} for k, p in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = report(asyncio.run(main_async(args)))
    path = ROOT / "bench" / "results" / "cluster.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"cpus": os.cpu_count(), **out}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
