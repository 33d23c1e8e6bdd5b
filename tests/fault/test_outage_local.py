"""One region goes down mid-run: writes are degraded, reads still work, and the workers bring it level."""

import pytest

from replicator.embedded import ensure
from tests.support.eventually import eventually
from tests.support.faulty import faulty_service


@pytest.fixture
async def service(tmp_path):
    config_path, token = ensure(tmp_path / "var")
    async with faulty_service(config_path) as (client, _, faulty):
        client.auth = {"Authorization": f"Bearer {token}"}
        yield client, faulty


async def test_a_region_outage_loses_no_acknowledged_write(service):
    client, faulty = service
    acked = {}
    for i in range(30):
        if i == 10:
            faulty["jp"].down = True
        body = b"value-%d" % i
        resp = await client.put(f"/v1/objects/c/account/k{i % 20}", data=body, headers=client.auth)
        assert resp.status == 201
        result = await resp.json()
        assert result["replication"] == ("degraded" if i >= 10 else "complete")
        acked[f"k{i % 20}"] = (body, result["version"])
    # Reads keep working from the region that is up.
    for name, (body, version) in acked.items():
        resp = await client.get(f"/v1/objects/c/account/{name}", headers={**client.auth, "X-Purpose": "service"})
        assert resp.status == 200 and await resp.read() == body and resp.headers["X-Version"] == version
    head = await client.head("/v1/objects/c/account/k15", headers=client.auth)
    assert head.headers["X-Replication"] == "pending" and "jp=unavailable" in head.headers["X-Replication-Regions"]
    # One region down: still ready (degraded); both down: not ready, and nothing is acknowledged.
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "degraded"
    faulty["ca"].down = True
    assert (await client.get("/readyz")).status == 503
    resp = await client.put("/v1/objects/c/account/never", data=b"x", headers=client.auth)
    assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
    faulty["ca"].down = False
    # The region returns: the journal's rows bring it level.
    faulty["jp"].down = False

    async def level():
        heads = [await client.head(f"/v1/objects/c/account/{n}", headers=client.auth) for n in acked]
        return all(h.headers["X-Replication"] == "complete" for h in heads)

    await eventually(level, timeout=10, interval=0.05, what="the returning region brought level")
    faulty["ca"].down = True  # now every acknowledged write must be readable from jp alone
    for name, (body, version) in acked.items():
        resp = await client.get(f"/v1/objects/c/account/{name}", headers={**client.auth, "X-Purpose": "service"})
        assert await resp.read() == body and resp.headers["X-Version"] == version


async def test_a_client_that_hangs_up_mid_body_leaves_nothing(service, tmp_path):
    client, faulty = service

    async def body():
        yield b"x" * (5 << 20)
        raise ConnectionResetError("client went away")

    with pytest.raises(Exception):
        await client.put("/v1/objects/c/account/partial", data=body(), headers=client.auth)

    async def nothing_left():  # the service learns of the hang-up and cleans up in the background
        resp = await client.head("/v1/objects/c/account/partial", headers=client.auth)
        assert resp.status == 404
        for region in faulty.values():
            assert [i async for i in region.list()] == []
            assert list((region.inner.root / "tmp").iterdir()) == []
        return True

    await eventually(nothing_left, timeout=5, interval=0.05, what="the partial upload cleaned up")
