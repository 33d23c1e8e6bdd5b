"""Benchmark: what versions cost a PUT, and what a 1-byte Range read of a 1 GiB object costs (issue 15).

    cd /work/main && eval "$(deploy/dev/stack env)"     # Azurite + Keystone + Swift on 127.0.0.1
    .venv/bin/python bench/versions.py [--quick] [--only local|cloud] [--rounds N]

Prints a table and writes ``bench/results/versions.json``. Two ``replicator serve``
processes run on the same regions (two local regions in a temp dir, or an
Azurite container + a Swift container made for the run), one with the
``project`` class keeping no versions (``keep_versions_days = 0``, the service
as it was before versions) and one with the shipped policy (30 days); in one
run, interleaved, best of ``--rounds``:

* PUT of new 4 KiB objects at concurrency 32 and of 64 MiB objects, on each:
  the versioned service's ops/s and MB/s must stay within 10% (ratio >= 0.9);
  an overwrite (which keeps what it replaces) is reported beside it;
* a 1 GiB object, then 1-byte ``Range`` reads at random offsets and 4 KiB
  GETs, one at a time: the range read's p50 must be <= 2x the 4 KiB GET's (it
  fetches the header and one 1 MiB segment, not the object).

MB = 10**6 bytes of plaintext. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import (
    AZURE_ENV,
    DATA_CLASS,
    PURPOSE,
    SCOPES,
    Api,
    Run,
    Server,
    _session,
    cloud_cleanup,
    cloud_from_env,
    cloud_regions,
    cloud_setup,
    timed,
)

from keys import KeyFile, generate_token
from replicator.config import DEFAULT_POLICY
from replicator.embedded import config_text

MiB, GiB = 1 << 20, 1 << 30
RESULTS = Path(__file__).resolve().parent / "results" / "versions.json"
PUT_RATIO = 0.9  # versioned PUT throughput / unversioned, at least
RANGE_RATIO = 2.0  # 1-byte range read p50 / 4 KiB GET p50, at most


def write_config(directory: Path, regions: str, *, keep_project: bool) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    KeyFile.generate(directory / "kek.key")
    policy = DEFAULT_POLICY.read_text()
    if not keep_project:
        old = (
            'description = "project and hosting records"\npurposes = ["service"]\n'
            'retention = "until erasure"\nkeep_versions_days = 30'
        )
        assert old in policy, "the shipped policy changed: update bench/versions.py"
        policy = policy.replace(old, old.replace("keep_versions_days = 30", "keep_versions_days = 0"))
    (directory / "policy.toml").write_text(policy)
    token, token_hash = generate_token()
    scopes = [*SCOPES, f"restore:{DATA_CLASS}"]
    text = config_text("bench", regions, {"bench": (token_hash, scopes)}, header='policy = "policy.toml"\n')
    path = directory / "replicator.toml"
    path.write_text(text)
    return path, token


async def _stream(size: int, seed: int):
    rnd = random.Random(seed)
    left = size
    while left:
        n = min(left, 4 * MiB)
        yield rnd.randbytes(n)
        left -= n


async def put_phases(api: Api, big: bytes, smalls: list[bytes], count: int, big_count: int, server) -> dict[str, Run]:
    tag = uuid.uuid4().hex[:8]
    runs = {}
    runs["put_4KiB"] = await timed(
        "PUT new", count, len(smalls[0]), 32, lambda i: api.put(f"{tag}-s{i}", smalls[i]), server=server
    )
    runs["overwrite_4KiB"] = await timed(
        "PUT over", count, len(smalls[0]), 32, lambda i: api.put(f"{tag}-s{i}", smalls[i]), server=server
    )
    runs["put_64MiB"] = await timed(
        "PUT new", big_count, len(big), 2, lambda i: api.put(f"{tag}-b{i}", big), server=server
    )
    return runs


async def range_phases(api: Api, server, reads: int) -> dict[str, Run]:
    async with api.session.put(
        api.url("huge"),
        data=_stream(GiB, 1),
        headers={**api.auth, "Content-Type": "application/octet-stream", "Content-Length": str(GiB)},
    ) as r:
        if r.status != 201:
            raise RuntimeError(f"PUT 1 GiB: {r.status} {(await r.read())[:300]!r}")
    small = os.urandom(4096)
    await api.put("small", small)
    expect = random.Random(1)  # the same stream: check a few bytes of what a range returns
    sample = expect.randbytes(4 * MiB)
    offsets = [random.randrange(GiB) for _ in range(reads)]

    async def one_byte(i: int) -> None:
        offset = offsets[i] if i else 12345
        async with api.session.get(
            api.url("huge"), headers={**api.auth, "X-Purpose": PURPOSE, "Range": f"bytes={offset}-{offset}"}
        ) as r:
            body = await r.read()
            if r.status != 206 or len(body) != 1:
                raise RuntimeError(f"range read: {r.status} {body[:200]!r}")
            if offset < len(sample) and body != sample[offset : offset + 1]:
                raise RuntimeError("range read: wrong byte")

    return {
        "range_1B_of_1GiB": await timed("GET 1 B", reads, 1, 1, one_byte, server=server),
        "get_4KiB": await timed("GET", reads, 4096, 1, lambda i: api.get("small", small, 4096), server=server),
    }


async def measure(label: str, regions: str, env: dict[str, str], args, tmp: Path) -> dict:
    configs = {
        k: write_config(tmp / f"{label}-{k}", regions, keep_project=k == "versions") for k in ("none", "versions")
    }
    servers = {k: Server(path, env) for k, (path, _) in configs.items()}
    count, big_count, reads = (200, 2, 50) if args.quick else (1000, 6, 200)
    smalls = [os.urandom(4096) for _ in range(count)]
    big = os.urandom(64 * MiB)
    rounds: dict[str, list[dict[str, Run]]] = {"none": [], "versions": []}
    try:
        async with _session(32) as session:
            apis = {}
            for k, server in servers.items():
                await server.ready(session)
                apis[k] = Api(session, server, configs[k][1], f"bench-{k}-{uuid.uuid4().hex[:6]}")
                await apis[k].put("warm", smalls[0])
            for _ in range(args.rounds):
                for k in ("none", "versions"):
                    rounds[k].append(await put_phases(apis[k], big, smalls, count, big_count, servers[k]))
            ranges = await range_phases(apis["versions"], servers["versions"], reads)
    finally:
        for server in servers.values():
            server.stop()

    def best(k: str, phase: str) -> Run:
        return min((r[phase] for r in rounds[k]), key=lambda run: run.wall_s)

    out: dict = {"phases": {}, "targets": {}}
    for phase in ("put_4KiB", "overwrite_4KiB", "put_64MiB"):
        for k in ("none", "versions"):
            out["phases"][f"{phase}:{k}"] = best(k, phase).summary()
    for phase, run in ranges.items():
        out["phases"][phase] = run.summary()
    for phase in ("put_4KiB", "put_64MiB"):
        ratio = best("versions", phase).ops_s / best("none", phase).ops_s
        out["targets"][f"{phase} with versions / without"] = {
            "ratio": round(ratio, 3),
            "goal": f">= {PUT_RATIO}",
            "pass": ratio >= PUT_RATIO,
        }
    p50 = ranges["range_1B_of_1GiB"].pct(0.5) / ranges["get_4KiB"].pct(0.5)
    out["targets"]["1-byte range of 1 GiB p50 / 4 KiB GET p50"] = {
        "ratio": round(p50, 3),
        "goal": f"<= {RANGE_RATIO}",
        "pass": p50 <= RANGE_RATIO,
    }
    return out


def show(label: str, result: dict) -> None:
    print(f"\n{label}")
    print(f"  {'phase':34} {'ops/s':>9} {'MB/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'svc CPU s':>9}")
    for phase, s in result["phases"].items():
        print(
            f"  {phase:34} {s['ops_s']:9.1f} {s['mb_s']:9.1f} {s.get('p50_ms', 0):8.2f} {s.get('p99_ms', 0):8.2f}"
            f" {s.get('server_cpu_s', 0):9.2f}"
        )
    for name, t in result["targets"].items():
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {name}: {t['ratio']} (goal {t['goal']})")


async def main_async(args) -> None:
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.only in (None, "local"):
            regions = f"""[regions.ca]
kind = "local"
country = "CA"
path = "{tmp / "regions" / "ca"}"

[regions.jp]
kind = "local"
country = "JP"
path = "{tmp / "regions" / "jp"}"
"""
            results["local"] = await measure("local", regions, {}, args, tmp)
            show("local regions", results["local"])
        if args.only in (None, "cloud"):
            cloud = cloud_from_env(f"bench-versions-{uuid.uuid4().hex[:8]}")
            await cloud_setup(cloud)
            try:
                env = {AZURE_ENV: cloud.connection_string}
                results["cloud"] = await measure("cloud", cloud_regions(cloud), env, args, tmp)
                show("Azurite + Swift", results["cloud"])
            finally:
                await cloud_cleanup(cloud)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer objects (a smoke run)")
    parser.add_argument("--only", choices=["local", "cloud"])
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
