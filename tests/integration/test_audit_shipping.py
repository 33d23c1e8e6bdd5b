"""The audit chain shipped to both regions (Azurite and Swift behind Keystone), and checked against them.

``serve``'s shipper (``replicator.replication.audit_ship``) puts each node's
sealed segments and its checkpoint under ``audit/<node id>/`` in both regions;
``check_nodes`` (what ``replicator audit verify`` runs) finds an edited, a
truncated, a re-chained local log and a deleted segment, naming the node and
the first bad record. An outage of one region leaves reads served, readiness
"degraded" and the backlog in the metrics; the region catches up after.
"""

from __future__ import annotations

import re

import pytest

from replicator.http.app import AUDIT_SHIPPER
from replicator.replication.audit_check import check_nodes
from replicator.replication.audit_ship import segment_name
from tests.support.clouds import start_cloud
from tests.support.forgery import rechain
from tests.support.stack import server_stopped

from .test_clouds import uid

NAME = re.compile(r"audit/[a-z0-9-]+/(\d{12}|checkpoint)")


@pytest.fixture
async def cloud(tmp_path, clock, stores):
    c, client = await start_cloud(tmp_path / "svc", stores, clock)
    try:
        yield c
    finally:
        await client.close()


async def _reads(cloud, n: int) -> None:
    customer = f"c{uid()}"
    path = f"{customer}/account/profile"
    assert (await cloud.client.put(f"/v1/objects/{path}", data=b"x", headers=cloud.auth)).status == 201
    for _ in range(n):
        resp = await cloud.client.get(f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "service"})
        assert resp.status == 200, await resp.text()


async def test_the_chain_is_shipped_to_both_regions_and_every_tampering_is_named(cloud, tmp_path):
    shipper = cloud.app[AUDIT_SHIPPER]
    node, key, regions = shipper.node_id, shipper.key, shipper.regions
    await _reads(cloud, 3)
    await shipper.ship_once()
    await _reads(cloud, 2)
    await shipper.ship_once()  # a second segment
    head = shipper.audit.head
    assert head is not None and shipper.unshipped() == 0 and shipper.state() == "ok"
    for region in regions.values():
        names = [info.name async for info in region.list("audit/")]
        assert names and all(NAME.fullmatch(n) for n in names), names  # names hold no identifier
        assert segment_name(node, 2) in names
    findings, held = await check_nodes(regions, key, {node: cloud.audit_log})
    assert findings == [] and held == {node: head.seq}

    lines = cloud.audit_log.read_bytes().splitlines(keepends=True)
    copy = tmp_path / "copy.log"

    async def first_finding(tampered: list[bytes]):
        copy.write_bytes(b"".join(tampered))
        found, _ = await check_nodes(regions, key, {node: copy})
        assert found, "tampering not found"
        assert all(f.node == node for f in found)
        return found

    edited = lines[:]
    edited[3] = edited[3].replace(b'"outcome":"allowed"', b'"outcome":"denied"')
    found = await first_finding(rechain(edited, 3))  # edited, then re-chained with a guessed key
    assert (found[0].region, found[0].seq) == (None, 4) and "mac does not match" in found[0].reason
    assert {(f.region, f.seq) for f in found[1:]} == {("ca", 4), ("jp", 4)}
    found = await first_finding(lines[:-2])  # cut off the end: a whole chain on its own
    assert {(f.region, f.seq) for f in found} == {("ca", len(lines) - 1), ("jp", len(lines) - 1)}
    assert all("truncated" in f.reason for f in found)
    found = await first_finding(rechain(lines, 0))  # the whole file re-chained
    assert found[0].region is None and found[0].seq == 1
    await regions["jp"].delete(segment_name(node, 1))  # a shipped segment deleted
    found, _ = await check_nodes(regions, key, {node: cloud.audit_log})
    assert [(f.node, f.region, f.seq) for f in found] == [(node, "jp", 1)] and "missing" in found[0].reason


async def test_a_region_outage_shows_in_readiness_and_metrics_and_never_blocks_reads(cloud):
    shipper = cloud.app[AUDIT_SHIPPER]
    await _reads(cloud, 1)
    await shipper.ship_once()
    assert shipper.unshipped() == 0
    with server_stopped("azurite"):
        await _reads(cloud, 2)  # served from jp; the local append is the fail-closed step
        await shipper.ship_once()
        assert shipper.state().startswith("behind: ca")
        ready = await (await cloud.client.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["checks"]["audit_shipping"].startswith("behind")
        metrics = await (await cloud.client.get("/metrics")).text()
        unshipped = re.search(r"^replicator_audit_unshipped_records (\S+)$", metrics, re.M)
        assert unshipped and float(unshipped.group(1)) >= 2
        assert re.search(r"^replicator_audit_unshipped_oldest_seconds (\S+)$", metrics, re.M)
    await shipper.ship_once()  # ca copies what it missed from jp, then takes the rest
    assert shipper.state() == "ok" and shipper.unshipped() == 0
    findings, held = await check_nodes(shipper.regions, shipper.key, {shipper.node_id: cloud.audit_log})
    assert findings == [] and held[shipper.node_id] == shipper.audit.head.seq
