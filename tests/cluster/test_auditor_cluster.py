"""The auditor's commands on a 3-node cluster: `audit who-accessed` finds one customer's reads, writes
and denials from every node's chain (shipped to both regions every second here), the subject-access
export of one node holds the accesses made on the others, and an erasure receipt from any node is
signed with the deployment key and checks offline with `erase verify-receipt`."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import aiohttp
import pytest

from tests.support.eventually import eventually

from .conftest import Cluster

REPLICATOR = Path(sys.executable).with_name("replicator")


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    return {"REPLICATOR_AUDIT_SHIP_INTERVAL": "1"}


def _replicator(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    node_env = json.loads((cluster.dir / "node.env").read_text())
    return subprocess.run(
        [str(REPLICATOR), *args], env={**cluster.env, **node_env}, capture_output=True, text=True, timeout=120
    )


def _who(cluster: Cluster, customer: str, *more: str) -> subprocess.CompletedProcess:
    return _replicator(
        cluster, "audit", "who-accessed", customer, "--config", str(cluster.dir / "n1" / "replicator.toml"), *more
    )


async def test_who_accessed_and_the_export_see_every_node_and_no_other_customer(cluster: Cluster):
    read = {**cluster.auth, "X-Purpose": "service"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.put(f"{cluster.url(1)}/v1/objects/whoa/account/p", data=b"x", headers=cluster.auth) as r:
            assert r.status == 201
        async with http.put(f"{cluster.url(2)}/v1/objects/other/account/p", data=b"y", headers=cluster.auth) as r:
            assert r.status == 201
        for i in (2, 3):
            async with http.get(f"{cluster.url(i)}/v1/objects/whoa/account/p", headers=read) as r:
                assert r.status == 200
            async with http.get(f"{cluster.url(i)}/v1/objects/other/account/p", headers=read) as r:
                assert r.status == 200
        bad = {**cluster.auth, "X-Purpose": "analytics"}  # not a purpose of class account
        async with http.get(f"{cluster.url(3)}/v1/objects/whoa/account/p", headers=bad) as r:
            assert r.status == 403

        def everything_seen():
            done = _who(cluster, "whoa", "--json")
            if done.returncode != 0:
                return None
            doc = json.loads(done.stdout)
            seen = {(a["node"], a["action"], a["outcome"]) for a in doc["accesses"]}
            wanted = {("n1", "write", "allowed"), ("n2", "read", "allowed"), ("n3", "read", "allowed")}
            return doc if wanted | {("n3", "read", "denied")} <= seen else None

        # n1's own log holds its records at once; n2's and n3's come from what they shipped.
        doc = await eventually(lambda: asyncio.to_thread(everything_seen), timeout=60, interval=1, what="shipped")
        assert doc["findings"] == []
        assert {a["principal"] for a in doc["accesses"]} == {"dev"}
        assert sorted((a["node"], a["action"], a["class"], a["purpose"], a["outcome"]) for a in doc["accesses"]) == [
            ("n1", "write", "account", None, "allowed"),
            ("n2", "read", "account", "service", "allowed"),
            ("n3", "read", "account", "analytics", "denied"),
            ("n3", "read", "account", "service", "allowed"),
        ]  # once each though both regions hold them; other's write and reads are not there
        assert [a["time"] for a in doc["accesses"]] == sorted(a["time"] for a in doc["accesses"])
        other = json.loads(_who(cluster, "other", "--json").stdout)["accesses"]
        assert {(a["node"], a["action"]) for a in other} == {("n2", "write"), ("n2", "read"), ("n3", "read")}
        table = _who(cluster, "whoa")
        assert table.returncode == 0 and "4 accesses" in table.stderr
        assert any(" n3 " in line and "analytics" in line and "denied" in line for line in table.stdout.splitlines())
        assert cluster.token not in table.stdout + json.dumps(doc)
        since = _who(cluster, "whoa", "--since", "2999-01-01", "--json")
        assert since.returncode == 0 and json.loads(since.stdout)["accesses"] == []

        async with http.get(f"{cluster.url(1)}/v1/customers/whoa/export", headers=cluster.auth) as r:
            assert r.status == 200
            tar = tarfile.open(fileobj=io.BytesIO(await r.read()))
        history = json.loads(tar.extractfile("access-history.json").read())
        assert history["complete"] is True
        got = {(a["node"], a["action"], a["purpose"], a["outcome"]) for a in history["accesses"]}
        assert got == {
            ("n1", "write", None, "allowed"),
            ("n2", "read", "service", "allowed"),
            ("n3", "read", "service", "allowed"),
            ("n3", "read", "analytics", "denied"),
            ("n1", "export", None, "allowed"),  # the export's own record, from n1's local log
        }


async def test_an_erasure_receipt_from_any_node_is_signed_and_verifies_offline(cluster: Cluster, tmp_path):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.put(f"{cluster.url(1)}/v1/objects/gone/account/p", data=b"x", headers=cluster.auth) as r:
            assert r.status == 201
        async with http.delete(f"{cluster.url(2)}/v1/customers/gone", headers=cluster.auth) as r:
            assert r.status == 202
            erasure = (await r.json())["erasure"]

        async def done():
            async with http.get(f"{cluster.url(3)}/v1/erasures/{erasure}", headers=cluster.auth) as r:
                receipt = await r.json()
            return receipt if receipt["state"] == "done" else None

        receipt = await eventually(done, timeout=60, interval=0.5, what="the erasure finishing")
    public = str(cluster.dir / "receipt-signing.pem.pub")
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    checked = _replicator(cluster, "erase", "verify-receipt", str(path), "--public-key", public)
    assert checked.returncode == 0 and f"valid: erasure {erasure} (done" in checked.stdout, checked.stderr
    path.write_text(json.dumps({**receipt, "key_destroyed_at": "2020-01-01T00:00:00+00:00"}))
    checked = _replicator(cluster, "erase", "verify-receipt", str(path), "--public-key", public)
    assert checked.returncode == 1 and "INVALID: the signature does not match" in checked.stderr
