"""Writes over a WAN (tests/support/wan.py in front of Swift): a far region that stops moving bytes
makes a streamed PUT degraded after the no-progress deadline, and the workers copy it once the link
moves again; a slow link that keeps moving is never cut off."""

import asyncio
import base64
import os
import time

import pytest

from tests.support.clouds import Stores, start_cloud
from tests.support.eventually import eventually
from tests.support.wan import Link, WanProxy, far_clouds_yaml, mbit, port_of

MiB = 1 << 20
NO_PROGRESS = 1.0


@pytest.fixture
async def wan_cloud(tmp_path, stores):
    link = Link(delay=0.075, rate=mbit(48))  # 6 MB/s: 8 MiB take over a second of steady progress
    async with WanProxy(port_of(stores.swift.endpoint), link) as wan:
        far = Stores(stores.azure_conn, stores.clouds_yaml, stores.cloud, "unused")
        far.azure_container, far.swift_container = stores.azure_container, stores.swift_container
        far.clouds_yaml = str(
            far_clouds_yaml(stores.clouds_yaml, stores.cloud, stores.swift.endpoint, wan.port, tmp_path / "far.yaml")
        )
        cloud, client = await start_cloud(tmp_path / "svc", far, lambda: time.time_ns() // 1_000_000)
        cloud.service.no_progress_timeout = NO_PROGRESS
        try:
            yield cloud, wan
        finally:
            wan.resume()
            await client.close()


def uid() -> str:
    return base64.b32encode(os.urandom(5)).decode().lower()


async def chunked(data: bytes, size: int = 256 * 1024):
    """No Content-Length: the service streams the body to both regions."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_far_region_that_stalls_makes_the_write_degraded_and_is_copied_later(wan_cloud):
    cloud, wan = wan_cloud
    body, path = os.urandom(8 * MiB), f"c{uid()}/account/big"
    wan_before = wan.bytes_up

    async def stall_after_some_bytes():
        await eventually(lambda: wan.bytes_up - wan_before > 2 * MiB, timeout=30, interval=0.01, what="bytes up")
        wan.stall()

    staller = asyncio.ensure_future(stall_after_some_bytes())
    start = time.monotonic()
    resp = await cloud.put(path, chunked(body))
    took = time.monotonic() - start
    await staller
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    assert answer["replication"] == "degraded" and answer["regions"] == {"ca": "stored", "jp": "pending"}
    # About 1 s of sending, then the no-progress deadline; the region's timeouts and retries
    # (2 attempts of 2 s here, 4 of 30 s by default) took 9.2 s before FanOut.gather watched progress.
    assert took < 2 + NO_PROGRESS + 1.5
    assert (await cloud.service.journal.backlog()).pending >= 1  # the copy is owed, durably, before the answer
    got = await cloud.get(path)
    assert got.status == 200 and await got.read() == body  # served from ca at once

    wan.resume()

    async def levelled():
        head = await cloud.head(path)
        return head.headers["X-Replication"] == "complete" and (await cloud.service.journal.backlog()).pending == 0

    await eventually(levelled, timeout=60, interval=0.2, what="the workers copied the write to jp")


async def test_a_slow_link_that_keeps_moving_is_never_cut_off(wan_cloud):
    cloud, wan = wan_cloud
    body, path = os.urandom(8 * MiB), f"c{uid()}/account/slow"
    start = time.monotonic()
    resp = await cloud.put(path, chunked(body))
    took = time.monotonic() - start
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["replication"] == "complete"
    assert took > 2 * NO_PROGRESS  # it was slow: longer than the deadline, and still not cut off
    assert wan.bytes_up >= len(body)
