"""What one PUT and one GET cost in requests to each region, counted on the wire (not timed).

The service runs in-process on the dev stack with both regions behind a
counting proxy (tests/support/wan.py): ``ca`` (Azurite, near) with no delay,
``jp`` (Swift, far) at 75 ms each way. After a warm-up (the Keystone token,
the containers, the data key, pooled connections) each operation is counted:
every HTTP request the service sent each region, and every new connection.
The minimum is what a direct SDK call costs: a 4 KiB PUT of a new name is
one request to each region, a read served by the near region is one request
to it and none to the far one. docs/performance.md, "Round trips", says why
each request is there.
"""

from __future__ import annotations

import base64
import os
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from tests.support.clouds import CA_CONN_VAR, Stores, start_cloud
from tests.support.wan import Link, Request, WanProxy, far_clouds_yaml, port_of

FAR = Link(delay=0.075)  # Swift in Japan, seen from a node in Canada
SMALL = 4096
MIB = 1 << 20
PURPOSE = {"project": "service", "session": "authentication"}


def near_connection_string(conn: str, port: int) -> str:
    """``conn`` with its BlobEndpoint moved to 127.0.0.1:``port`` (the near proxy)."""
    parts = []
    for part in conn.split(";"):
        key, _, value = part.partition("=")
        if key == "BlobEndpoint":
            value = urlunsplit(urlsplit(value)._replace(netloc=f"127.0.0.1:{port}"))
        parts.append(f"{key}={value}" if _ else part)
    return ";".join(parts)


def blob_port(conn: str) -> int:
    return port_of(next(p.split("=", 1)[1] for p in conn.split(";") if p.startswith("BlobEndpoint=")))


class Counted:
    """The requests and new connections each region got since the last ``take()``."""

    def __init__(self, **proxies: WanProxy):
        self.proxies = proxies
        self.marks = {r: (0, 0) for r in proxies}
        self.take()

    def take(self) -> dict[str, tuple[list[Request], int]]:
        """Per region: its requests since the last take (the audit chain's shipping left out: a
        background task of its own) and how many connections were opened."""
        out = {}
        for region, wan in self.proxies.items():
            requests, connections = self.marks[region]
            got = [q for q in wan.requests[requests:] if "/audit/" not in unquote(q.target)]
            out[region] = (got, wan.connections - connections)
            self.marks[region] = (len(wan.requests), wan.connections)
        return out


def shown(counted: dict[str, tuple[list[Request], int]]) -> str:
    return "; ".join(
        f"{r}: {len(qs)} requests {[f'{q.method} {unquote(q.target)[:90]}' for q in qs]}, {c} new connections"
        for r, (qs, c) in counted.items()
    )


@pytest.fixture
async def wan_cloud(tmp_path, stores, monkeypatch):
    async with (
        WanProxy(blob_port(stores.azure_conn), Link()) as near,
        WanProxy(port_of(stores.swift.endpoint), FAR) as far,
    ):
        via = Stores(near_connection_string(stores.azure_conn, near.port), stores.clouds_yaml, stores.cloud, "unused")
        via.azure_container, via.swift_container = stores.azure_container, stores.swift_container
        via.clouds_yaml = str(
            far_clouds_yaml(stores.clouds_yaml, stores.cloud, stores.swift.endpoint, far.port, tmp_path / "far.yaml")
        )
        monkeypatch.setenv(CA_CONN_VAR, via.azure_conn)
        cloud, client = await start_cloud(tmp_path / "svc", via, lambda: time.time_ns() // 1_000_000)
        try:
            yield cloud, Counted(ca=near, jp=far)
        finally:
            await client.close()


def uid() -> str:
    return base64.b32encode(os.urandom(5)).decode().lower()


async def warm_up(cloud, customer: str, data_class: str) -> None:
    """What only the first calls pay: the token, the containers, the data key, pooled connections."""
    for i in range(3):
        path = f"{customer}/{data_class}/warm-{i}"
        resp = await cloud.put(path, os.urandom(SMALL))
        assert resp.status == 201, await resp.text()
        got = await cloud.get(path, PURPOSE[data_class])
        assert got.status == 200
        await got.read()


@pytest.mark.parametrize("data_class", ["project", "session"])  # keeps versions; does not
async def test_a_small_put_of_a_new_name_is_one_request_to_each_region(wan_cloud, data_class):
    cloud, counted = wan_cloud
    customer = f"c{uid()}"
    await warm_up(cloud, customer, data_class)
    counted.take()
    resp = await cloud.put(f"{customer}/{data_class}/new", os.urandom(SMALL))
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["replication"] == "complete"
    got = counted.take()
    assert [(q.method) for q in got["jp"][0]] == ["PUT"], shown(got)
    assert [(q.method) for q in got["ca"][0]] == ["PUT"], shown(got)
    assert got["jp"][1] == 0, shown(got)  # a pooled connection: no new one across the WAN


async def test_a_near_read_asks_the_near_region_once_and_the_far_one_never(wan_cloud):
    cloud, counted = wan_cloud
    customer = f"c{uid()}"
    await warm_up(cloud, customer, "project")
    body = os.urandom(SMALL)
    resp = await cloud.put(f"{customer}/project/read-me", body)
    assert resp.status == 201
    counted.take()
    got = await cloud.get(f"{customer}/project/read-me")
    assert got.status == 200 and await got.read() == body
    counts = counted.take()
    assert counts["jp"][0] == [], shown(counts)
    assert [q.method for q in counts["ca"][0]] == ["GET"], shown(counts)
    assert counts["ca"][1] == 0, shown(counts)


def most_at_once(requests: list[Request]) -> int:
    """The most of ``requests`` waiting for their answers at one time."""
    events = sorted([(q.sent, 1) for q in requests] + [(q.answered or float("inf"), -1) for q in requests])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


async def test_the_segments_of_a_large_put_go_out_while_earlier_ones_wait_for_their_answers(wan_cloud):
    cloud, counted = wan_cloud
    customer = f"c{uid()}"
    await warm_up(cloud, customer, "session")
    body = os.urandom(6 * MIB)  # 1 MiB segments in these tests' config: 7 segments, then the manifest

    async def streamed():
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    warm = await cloud.put(f"{customer}/session/warm-large", streamed())  # the segments container, made once
    assert warm.status == 201, await warm.text()
    counted.take()
    resp = await cloud.put(f"{customer}/session/large", streamed())
    assert resp.status == 201, await resp.text()
    got = counted.take()
    far = got["jp"][0]
    segments = [q for q in far if q.method == "PUT" and "multipart-manifest" not in q.target]
    manifests = [q for q in far if "multipart-manifest=put" in q.target]
    assert len(segments) == 7 and len(manifests) == 1 and len(far) == 8, shown(got)  # no HEAD: nothing to keep
    # A segment goes out while the one before waits for its answer (a round trip over the WAN), rather
    # than after it: one idle round trip per segment before (at most one segment was ever waiting).
    assert most_at_once(segments) >= 2, shown(got)


async def test_what_each_call_costs_in_requests_to_each_region_as_docs_performance_lists_it(wan_cloud):
    """The table of docs/performance.md, "Round trips": each call's requests to each region, in order.
    Each line is one round trip after the one before, except where the docs say they go at once."""
    cloud, counted = wan_cloud
    customer = f"c{uid()}"
    await warm_up(cloud, customer, "project")
    await warm_up(cloud, customer, "session")
    project, session = f"{customer}/project/x", f"{customer}/session/x"
    both = lambda *methods: {"ca": list(methods), "jp": list(methods)}  # noqa: E731
    calls = [
        ("PUT new name, versions kept", cloud.put(project, os.urandom(SMALL)), 201, both("PUT")),
        ("PUT new name, no versions", cloud.put(session, os.urandom(SMALL)), 201, both("PUT")),
        ("PUT overwrite, no versions", cloud.put(session, os.urandom(SMALL)), 201, both("PUT")),
        # create refused (412), look up with the bytes (a GET), keep the replaced one beside, replace
        ("PUT overwrite, versions kept", cloud.put(project, os.urandom(SMALL)), 201, both(*"PUT GET PUT PUT".split())),
        (
            "PUT If-None-Match: * new",
            cloud.put(f"{project}-c", os.urandom(SMALL), **{"If-None-Match": "*"}),
            201,
            both("HEAD", "PUT"),
        ),
        (
            "PUT If-None-Match: * exists",
            cloud.put(f"{project}-c", os.urandom(SMALL), **{"If-None-Match": "*"}),
            412,
            both("HEAD"),
        ),
        ("GET", cloud.get(project), 200, {"ca": ["GET"], "jp": []}),
        # near fast path: the head, then the header and the segments holding the range, at once
        (
            "GET Range",
            cloud.client.get(
                f"/v1/objects/{project}", headers={**cloud.auth, "X-Purpose": "service", "Range": "bytes=0-9"}
            ),
            206,
            {"ca": ["HEAD", "GET", "GET"], "jp": []},
        ),
        ("GET missing", cloud.get(f"{project}-missing"), 404, {"ca": ["GET", "HEAD"], "jp": ["HEAD"]}),
        ("HEAD", cloud.head(project), 200, both("HEAD")),
        # look up; keep what it holds by a copy inside each region (Swift HEADs the source first:
        # its ETag pins the copy); the tombstone
        (
            "DELETE, versions kept",
            cloud.delete(project),
            200,
            {"ca": ["HEAD", "PUT", "PUT"], "jp": ["HEAD"] * 2 + ["PUT"] * 2},
        ),
        ("DELETE, no versions", cloud.delete(session), 200, both("HEAD", "PUT")),
    ]
    counted.take()
    costs = {}
    for what, call, status, _ in calls:
        resp = await call
        assert resp.status == status, (what, await resp.text())
        await resp.read()
        costs[what] = {r: [q.method for q in qs] for r, (qs, _) in counted.take().items()}
    assert costs == {what: expected for what, _, _, expected in calls}


async def test_a_kept_version_is_copied_inside_each_region_not_across_the_wan(wan_cloud):
    """A DELETE in a class that keeps versions keeps a 5 MiB object by a copy inside each region
    (Copy Blob, Swift's X-Copy-From): no byte of it crosses either link, and the kept version reads back."""
    cloud, counted = wan_cloud
    customer = f"c{uid()}"
    await warm_up(cloud, customer, "project")
    path, body = f"{customer}/project/big", os.urandom(5 * MIB)
    assert (await cloud.put(path, body)).status == 201
    near, far = counted.proxies["ca"], counted.proxies["jp"]
    moved = near.bytes_up + near.bytes_down + far.bytes_up + far.bytes_down
    resp = await cloud.delete(path)
    assert resp.status == 200, await resp.text()
    moved = near.bytes_up + near.bytes_down + far.bytes_up + far.bytes_down - moved
    assert moved < 64 << 10, f"{moved} bytes crossed the links to keep a 5 MiB version"
    listed = await (
        await cloud.client.get(
            f"/v1/objects/{path}", params={"versions": ""}, headers={**cloud.auth, "X-Purpose": "service"}
        )
    ).json()
    kept = [v for v in listed["versions"] if not v["deleted"]]
    assert len(kept) == 1
    got = await cloud.client.get(
        f"/v1/objects/{path}", params={"version": kept[0]["version"]}, headers={**cloud.auth, "X-Purpose": "service"}
    )
    assert got.status == 200 and await got.read() == body  # it decrypts
    stored = f"{cloud.path(customer, 'project', 'big')}/{kept[0]['version']}"
    for region in cloud.service.regions.values():  # and each region's copy is whole (its digest is checked)
        info, stream = await region.get(stored)
        assert sum([len(c) async for c in stream]) == info.size > len(body)
