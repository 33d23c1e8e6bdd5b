"""A region that hangs costs a request the straggler grace, not the region's timeout, and never a stale read."""

import asyncio
import time

import pytest

from replicator.embedded import ensure
from replicator.http import handlers as api
from tests.support.eventually import eventually
from tests.support.faulty import faulty_service

GRACE = 0.2


@pytest.fixture
async def service(tmp_path):
    config_path, token = ensure(tmp_path / "var")
    async with faulty_service(config_path) as (client, app, faulty):
        app[api.SERVICE].straggler_grace = GRACE
        client.auth = {"Authorization": f"Bearer {token}"}
        client.journal = app[api.SERVICE].journal
        yield client, faulty


async def timed(call):
    start = time.monotonic()
    resp = await call
    await resp.read()
    return resp, time.monotonic() - start


async def test_a_hung_region_costs_the_grace_and_is_levelled_when_it_returns(service):
    client, faulty = service
    read = {**client.auth, "X-Purpose": "service"}
    assert (await client.put("/v1/objects/c/account/old", data=b"old", headers=client.auth)).status == 201
    faulty["jp"].hung = True

    resp, took = await timed(client.put("/v1/objects/c/account/new", data=b"new", headers=client.auth))
    assert resp.status == 201 and (await resp.json())["replication"] == "degraded"
    assert took < GRACE + 1.0
    for name, body in (("old", b"old"), ("new", b"new")):
        resp, took = await timed(client.get(f"/v1/objects/c/account/{name}", headers=read))
        assert resp.status == 200 and await resp.read() == body and took < GRACE + 1.0
    resp, took = await timed(client.head("/v1/objects/c/account/old", headers=client.auth))
    assert "jp=unavailable" in resp.headers["X-Replication-Regions"] and took < GRACE + 1.0
    resp, took = await timed(client.delete("/v1/objects/c/account/old", headers=client.auth))
    assert resp.status == 200 and (await resp.json())["regions"]["jp"] == "pending" and took < 2 * GRACE + 1.0

    faulty["jp"].hung = False  # the journal's rows (the new object, the tombstone) bring jp level

    async def level():
        head = await client.head("/v1/objects/c/account/new", headers=client.auth)
        return head.headers["X-Replication"] == "complete" and (await client.journal.backlog()).pending == 0

    await eventually(level, timeout=10, interval=0.05, what="the region that hung brought level")


async def test_a_read_waits_for_a_late_region_when_the_journal_says_the_fast_one_is_behind(service):
    client, faulty = service
    assert (await client.put("/v1/objects/c/account/k", data=b"v1", headers=client.auth)).status == 201
    faulty["ca"].down = True
    resp = await client.put("/v1/objects/c/account/k", data=b"v2", headers=client.auth)
    assert (await resp.json())["replication"] == "degraded"  # ca owes a copy of v2
    # jp, the only holder of v2, is late; ca answers at once with v1 and is back up.
    faulty["jp"].hung = True
    faulty["ca"].down = False
    asyncio.get_running_loop().call_later(1.0, setattr, faulty["jp"], "hung", False)
    resp, took = await timed(client.get("/v1/objects/c/account/k", headers={**client.auth, "X-Purpose": "service"}))
    assert resp.status == 200 and await resp.read() == b"v2"
    assert took >= 0.9  # it waited for jp instead of serving ca's stale v1 after the grace


async def test_a_write_after_a_look_up_outranks_what_it_saw_even_with_the_wall_clock_behind(service):
    client, _ = service
    resp = await client.put("/v1/objects/c/account/k", data=b"v1", headers=client.auth)
    first = (await resp.json())["version"]
    clock = client.app[api.SERVICE].clock
    clock._wall_ms = lambda: 1  # a restarted node whose wall clock stepped far back
    clock._last = type(clock._last)(0, 0, clock.node)
    await client.head("/v1/objects/c/account/k", headers=client.auth)
    resp = await client.put("/v1/objects/c/account/k", data=b"v2", headers=client.auth)
    assert (await resp.json())["version"] > first
    resp = await client.get("/v1/objects/c/account/k", headers={**client.auth, "X-Purpose": "service"})
    assert await resp.read() == b"v2"
