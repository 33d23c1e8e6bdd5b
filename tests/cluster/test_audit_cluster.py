"""The audit chains of a 3-node cluster, shipped to both regions and checked by `replicator audit verify`.

Each node ships its own keyed chain (``audit/<node id>/``) every second here
(``REPLICATOR_AUDIT_SHIP_INTERVAL=1``); the command, run with n1's config and
the other nodes' logs, finds an edited and re-chained, a truncated and a
whole-file re-chained log and a deleted segment, naming the node and the first
bad record.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from replicator.replication.audit_ship import segment_name
from tests.support.eventually import eventually
from tests.support.forgery import rechain

from .conftest import NODES, Cluster

REPLICATOR = Path(sys.executable).with_name("replicator")


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    return {"REPLICATOR_AUDIT_SHIP_INTERVAL": "1"}


def _verify(cluster: Cluster, logs: dict[str, Path]) -> subprocess.CompletedProcess:
    node_env = json.loads((cluster.dir / "node.env").read_text())
    args = [str(REPLICATOR), "audit", "verify", "--config", str(cluster.dir / "n1" / "replicator.toml")]
    for node, path in logs.items():
        args += ["--node-log", f"{node}={path}"]
    return subprocess.run(args, env={**cluster.env, **node_env}, capture_output=True, text=True, timeout=120)


async def test_every_node_s_chain_is_in_both_regions_and_each_tampering_is_named(cluster: Cluster, tmp_path):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.put(f"{cluster.url(1)}/v1/objects/audr/account/p", data=b"x", headers=cluster.auth) as r:
            assert r.status == 201
        for url in cluster.urls:
            for _ in range(3):
                headers = {**cluster.auth, "X-Purpose": "service"}
                async with http.get(f"{url}/v1/objects/audr/account/p", headers=headers) as r:
                    assert r.status == 200
    logs = {f"n{i}": cluster.dir / f"n{i}" / "audit.log" for i in range(1, NODES + 1)}
    counts = {node: len(path.read_bytes().splitlines()) for node, path in logs.items()}

    def all_shipped() -> bool:
        done = _verify(cluster, logs)
        held = {m[0]: int(m[1]) for m in re.findall(r"node (n\d): every region holds records 1-(\d+)", done.stdout)}
        return done.returncode == 0 and all(held.get(n, 0) >= c for n, c in counts.items())

    await eventually(lambda: asyncio.to_thread(all_shipped), timeout=60, interval=1, what="every chain shipped")

    copies = {}
    for node, path in logs.items():
        copies[node] = tmp_path / f"{node}.log"
        copies[node].write_bytes(path.read_bytes())
    n2 = copies["n2"].read_bytes().splitlines(keepends=True)
    edited = n2[:]
    edited[1] = edited[1].replace(b'"principal":"dev"', b'"principal":"ops"').replace(b'"read"', b'"write"')
    copies["n2"].write_bytes(b"".join(rechain(edited, 1)))
    n3 = copies["n3"].read_bytes().splitlines(keepends=True)
    copies["n3"].write_bytes(b"".join(n3[:2]))
    n1 = copies["n1"].read_bytes().splitlines(keepends=True)
    copies["n1"].write_bytes(b"".join(rechain(n1, 0)))
    done = await asyncio.to_thread(_verify, cluster, copies)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "node n2, local log at record 2: record mac does not match" in done.stderr
    assert "node n2, region ca at record 2: the local record differs" in done.stderr
    assert "node n3, region jp at record 3: the local log ends at record 2" in done.stderr
    assert "node n1, local log at record 1:" in done.stderr

    async with cluster.stores.azure() as svc:  # behind the service's back, with the region's credentials
        await svc.get_container_client(cluster.stores.azure_container).delete_blob(segment_name("n3", 1))
    done = await asyncio.to_thread(_verify, cluster, logs)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"node n3, region ca at record 1: segment 1 of \d+ is missing \(deleted\)", done.stderr)
    assert "node n1" not in done.stderr and "node n2" not in done.stderr, done.stderr
