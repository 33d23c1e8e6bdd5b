"""The HTTP API end to end over two local regions (the embedded default)."""

import io
import json
import tarfile

from aiohttp.test_utils import TestClient, TestServer

from regions.local import LocalRegion
from replicator.config import load_config
from replicator.embedded import ensure
from replicator.http.app import AUDIT_SHIPPER, build_app
from replicator.replication.audit_ship import Shipped, checkpoint_name, read_object
from tests.support.eventually import eventually

SIN = b"my SIN is 130 692 544, keep it safe"


async def put(api, path, body, **headers):
    return await api.put(f"/v1/objects/{path}", data=body, headers={**api.auth, **headers})


async def get(api, path, purpose="service", **headers):
    return await api.get(f"/v1/objects/{path}", headers={**api.auth, "X-Purpose": purpose, **headers})


async def test_put_then_get_round_trip(api):
    resp = await put(api, "cust-1/account/profile/email.txt", b"ada@example.com", **{"Content-Type": "text/plain"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert (
        body["replication"] == "complete" and body["size"] == 15 and body["regions"] == {"ca": "stored", "jp": "stored"}
    )
    resp = await get(api, "cust-1/account/profile/email.txt")
    assert resp.status == 200
    assert await resp.read() == b"ada@example.com"
    assert resp.headers["X-Version"] == body["version"]
    assert resp.headers["Content-Type"] == "text/plain"


async def test_errors_are_json_with_a_code(api):
    resp = await api.get("/v1/objects/c/account/x", headers={"X-Purpose": "service"})
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    resp = await get(api, "c/account/x", purpose="")
    assert resp.status == 400 and "X-Purpose" in (await resp.json())["message"]
    resp = await get(api, "c/account/x", purpose="analytics")
    assert resp.status == 403
    resp = await get(api, "c/account/x")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await put(api, "c/nosuchclass/x", b"x")
    assert resp.status == 400 and "nosuchclass" in (await resp.json())["message"]
    resp = await api.get("/nowhere")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_sin_is_refused_and_nothing_is_stored(api, var):
    resp = await put(api, "c/account/notes", SIN)
    assert resp.status == 422 and (await resp.json())["error"] == "sin_refused"
    resp = await get(api, "c/account/notes")
    assert resp.status == 404


async def test_large_streamed_put_and_get(api):
    data = bytes(range(256)) * (12 * 4096 + 7)  # ~12 MiB: streams, several segments
    resp = await put(api, "c/project/big.bin", data)
    assert resp.status == 201, await resp.text()
    resp = await get(api, "c/project/big.bin")
    assert await resp.read() == data


async def test_delete_head_list(api):
    for i in range(3):
        assert (await put(api, f"c/account/n{i}", b"v%d" % i)).status == 201
    resp = await api.head("/v1/objects/c/account/n1", headers=api.auth)
    assert resp.status == 200 and resp.headers["X-Replication"] == "complete"
    resp = await api.delete("/v1/objects/c/account/n1", headers=api.auth)
    assert resp.status == 200 and (await resp.json())["regions"] == {"ca": "deleted", "jp": "deleted"}
    assert (await get(api, "c/account/n1")).status == 404
    resp = await api.get("/v1/objects/c", params={"class": "account", "limit": "1"}, headers=api.auth)
    page = await resp.json()
    names = [o["name"] for o in page["objects"]]
    while page["cursor"]:
        resp = await api.get(
            "/v1/objects/c", params={"class": "account", "limit": "1", "cursor": page["cursor"]}, headers=api.auth
        )
        page = await resp.json()
        names += [o["name"] for o in page["objects"]]
    assert sorted(names) == ["n0", "n2"]


async def test_visit_data_expires_after_90_days(api, clock):
    assert (await put(api, "c/visit/2026-11-01", b"ip=203.0.113.9")).status == 201
    assert (await get(api, "c/visit/2026-11-01", purpose="analytics")).status == 200
    clock.advance(91)
    resp = await get(api, "c/visit/2026-11-01", purpose="analytics")
    assert resp.status == 410


async def test_if_none_match_creates_only(api):
    assert (await put(api, "c/account/once", b"1", **{"If-None-Match": "*"})).status == 201
    assert (await put(api, "c/account/once", b"2", **{"If-None-Match": "*"})).status == 412


async def test_erasure_then_export(api):
    for i in range(3):
        assert (await put(api, f"eve/account/n{i}", b"x%d" % i)).status == 201
    assert (await put(api, "bob/account/n0", b"bob")).status == 201
    resp = await api.get("/v1/customers/bob/export", headers=api.auth)
    assert resp.status == 200
    tar = tarfile.open(fileobj=io.BytesIO(await resp.read()))
    assert tar.extractfile("account/n0").read() == b"bob"
    manifest = json.loads(tar.extractfile("manifest.json").read())
    assert [o["name"] for o in manifest["objects"]] == ["n0"]

    resp = await api.delete("/v1/customers/eve", headers=api.auth)
    assert resp.status == 202
    receipt = await resp.json()
    assert (await get(api, "eve/account/n0")).status == 410

    async def done():
        status = await (await api.get(f"/v1/erasures/{receipt['erasure']}", headers=api.auth)).json()
        return status if status["state"] == "done" else None

    status = await eventually(done, timeout=5, interval=0.05, what="the erasure finishing")
    assert status["regions"] == {"ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 3, "remaining": 0}}
    assert (await put(api, "eve/account/n9", b"new")).status == 410
    assert (await get(api, "bob/account/n0")).status == 200


async def test_readyz_and_metrics(api):
    resp = await api.get("/readyz")
    assert resp.status == 200, await resp.text()
    await put(api, "c/account/m", b"x")
    text = await (await api.get("/metrics")).text()
    assert "replicator_region_op_seconds_count" in text and "replicator_journal_backlog" in text


async def test_metrics_carry_the_lag_slo_gauges_for_every_region(api):
    async def gauges():
        text = await (await api.get("/metrics")).text()
        lines = [f'replicator_replication_pending_operations{{region="{r}"}} 0.0' for r in ("ca", "jp")]
        return all(line in text for line in lines) and "replicator_replication_oldest_pending_seconds" in text

    await eventually(gauges, timeout=5, interval=0.05, what="the lag gauges (nothing owed: 0, not absent)")


async def test_a_node_ships_its_last_audit_records_when_it_stops(var, clock):
    """Records appended after the last shipping round reach both regions at shutdown, not at the next start."""
    config_path, token = ensure(var)
    config = load_config(config_path)
    app = build_app(config, now_ms=clock, workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await client.put("/v1/objects/c1/account/a", data=b"x", headers=auth)).status == 201
        await app[AUDIT_SHIPPER].ship_once()
        for _ in range(3):  # appended after the round: only the shutdown round ships them
            assert (
                await client.get("/v1/objects/c1/account/a", headers={**auth, "X-Purpose": "service"})
            ).status == 200
        head = app[AUDIT_SHIPPER].audit.head
    assert head is not None
    for name in ("ca", "jp"):
        region = LocalRegion(var / "regions" / name, name=name)
        shipped = Shipped.decode(await read_object(region, checkpoint_name(config.node_id)))
        assert shipped.seq == head.seq
