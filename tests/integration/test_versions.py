"""Versions, restore, Range, ETag and If-Match against the real stores of the dev stack (issue 15).

Region ``ca`` is Azurite and ``jp`` Swift behind Keystone v3 (``tests.support.clouds``); what the
stores hold is read behind the service's back. The packaged policy keeps 30 days of versions for
``account``, ``billing`` and ``project`` and none for ``session`` and ``visit``.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from keys._segments import SEGMENT_SIZE, TAG_LEN
from replicator.config import DEFAULT_POLICY
from replicator.reconcile.executor import Reconciler
from replicator.retention import DAY_MS, keep_of, retention_of
from tests.support.clouds import MiB, start_cloud
from tests.support.eventually import eventually

FIRST = SEGMENT_SIZE - 40 - TAG_LEN  # plaintext in segment 0 (Tink's 40-byte header is in it)
LATER = SEGMENT_SIZE - TAG_LEN  # plaintext in every later segment


@pytest.fixture
async def cloud(tmp_path, clock, stores):
    c, client = await start_cloud(tmp_path / "svc", stores, clock)
    try:
        yield c
    finally:
        await client.close()


def uid() -> str:
    return base64.b32encode(os.urandom(5)).decode().lower()


async def created(resp) -> dict:
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert resp.headers["ETag"] == f'"{body["version"]}"'
    return body


async def versions(cloud, path: str) -> list[dict]:
    resp = await cloud.client.get(
        f"/v1/objects/{path}", params={"versions": ""}, headers={**cloud.auth, "X-Purpose": "service"}
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["versions"]


async def read_version(cloud, path: str, version: str, purpose: str = "service"):
    return await cloud.client.get(
        f"/v1/objects/{path}", params={"version": version}, headers={**cloud.auth, "X-Purpose": purpose}
    )


async def restore(cloud, path: str, version: str, auth=None):
    return await cloud.client.post(f"/v1/objects/{path}", params={"restore": version}, headers=auth or cloud.auth)


async def test_an_overwrite_keeps_the_old_version_in_both_regions(cloud):
    customer = f"ada-{uid()}"
    path = f"{customer}/account/email"
    v1 = await created(await cloud.put(path, b"ada@example.com", **{"Content-Type": "text/plain"}))
    v2 = await created(await cloud.put(path, b"ada@new.example.com"))

    listed = await versions(cloud, path)
    assert [(v["version"], v["current"], v["deleted"], v["size"]) for v in listed] == [
        (v2["version"], True, False, 19),
        (v1["version"], False, False, 15),
    ]
    resp = await read_version(cloud, path, v1["version"])
    assert resp.status == 200 and await resp.read() == b"ada@example.com"
    assert resp.headers["ETag"] == f'"{v1["version"]}"' and resp.headers["Content-Type"] == "text/plain"
    resp = await cloud.get(path)
    assert await resp.read() == b"ada@new.example.com" and resp.headers["ETag"] == f'"{v2["version"]}"'

    # The kept version is ciphertext under <object path>/<version> in both stores, with when it was superseded.
    kept = f"{cloud.path(customer, 'account', 'email')}/{v1['version']}"
    azure, (_, swift) = await cloud.stores.azure_head(kept), await cloud.stores.swift_head(kept)
    assert azure["version"] == swift["version"] == v1["version"]
    assert int(azure["sup"]) >= int(azure["wtime"]) and azure["sup"] == swift["sup"]
    assert b"ada@example.com" not in await cloud.stores.azure_body(kept)
    assert b"ada@example.com" not in await cloud.stores.swift_body(kept)

    # A streamed overwrite (no Content-Length: looked up first) keeps what it replaces too.
    async def chunks():
        yield b"ada@third.example.com"

    v3 = await created(await cloud.put(path, chunks()))
    assert [v["version"] for v in await versions(cloud, path)] == [v3["version"], v2["version"], v1["version"]]
    resp = await read_version(cloud, path, v2["version"])
    assert await resp.read() == b"ada@new.example.com"
    v2 = v3
    # The listing shows the object once; the kept version is not an object.
    resp = await cloud.client.get(f"/v1/objects/{customer}", params={"class": "account"}, headers=cloud.auth)
    assert [o["version"] for o in (await resp.json())["objects"]] == [v2["version"]]


async def test_a_delete_is_undone_by_a_restore(cloud):
    customer = f"bob-{uid()}"
    path = f"{customer}/project/site.tar"
    body = os.urandom(2 * MiB + 5)  # streamed, several segments
    v1 = await created(await cloud.put(path, body))
    deleted = await cloud.delete(path)
    assert deleted.status == 200
    marker = (await deleted.json())["version"]
    assert deleted.headers["ETag"] == f'"{marker}"'
    assert (await cloud.get(path)).status == 404

    listed = await versions(cloud, path)
    assert [(v["version"], v["deleted"], v["current"]) for v in listed] == [
        (marker, True, True),
        (v1["version"], False, False),
    ]
    resp = await restore(cloud, path, marker)
    assert resp.status == 400 and "delete marker" in (await resp.json())["message"]
    resp = await read_version(cloud, path, marker)
    assert resp.status == 404
    resp = await restore(cloud, path, "0001000000000000.00000.nowhere")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await restore(cloud, path, "yesterday")
    assert resp.status == 400 and "restore parameter" in (await resp.json())["message"]
    resp = await read_version(cloud, path, "v1")
    assert resp.status == 400 and "version parameter" in (await resp.json())["message"]
    resp = await restore(cloud, path, v1["version"], auth=cloud.limited)
    assert resp.status == 403

    restored = await created(await restore(cloud, path, v1["version"]))
    assert restored["version"] > marker and restored["size"] == len(body)
    resp = await cloud.get(path)
    assert resp.status == 200 and await resp.read() == body
    listed = await versions(cloud, path)
    assert [v["version"] for v in listed] == [restored["version"], marker, v1["version"]]


async def test_a_stolen_token_overwriting_and_deleting_loses_nothing(cloud):
    """A token goes rogue: every object is overwritten, half are then deleted; each is restored from its versions."""
    customer = f"carol-{uid()}"
    originals = {f"account/n{i}": f"original {i} {uid()}".encode() for i in range(4)}
    originals |= {f"project/p{i}": os.urandom(1000 + i) for i in range(4)}
    for name, body in originals.items():
        await created(await cloud.put(f"{customer}/{name}", body))
    for i, name in enumerate(originals):
        await created(await cloud.put(f"{customer}/{name}", b"ransom note"))
        if i % 2:
            assert (await cloud.delete(f"{customer}/{name}")).status == 200
    resp = await cloud.client.get(f"/v1/objects/{customer}", headers=cloud.auth)  # every class the token may see
    assert len((await resp.json())["objects"]) == len(originals) // 2

    for name in originals:
        oldest = (await versions(cloud, f"{customer}/{name}"))[-1]
        assert not oldest["deleted"]
        await created(await restore(cloud, f"{customer}/{name}", oldest["version"]))
    for name, body in originals.items():
        resp = await cloud.get(f"{customer}/{name}")
        assert resp.status == 200 and await resp.read() == body, name


async def test_if_match_lets_one_of_two_racing_writers_win(cloud):
    customer = f"dan-{uid()}"
    path = f"{customer}/billing/card"
    v1 = await created(await cloud.put(path, b"card 1"))
    tag = f'"{v1["version"]}"'
    first, second = await asyncio.gather(
        cloud.put(path, b"writer A", **{"If-Match": tag}), cloud.put(path, b"writer B", **{"If-Match": tag})
    )
    assert sorted([first.status, second.status]) == [201, 412]
    winner = first if first.status == 201 else second
    won = await winner.json()
    loser = second if winner is first else first
    assert (await loser.json())["error"] == "precondition_failed"
    resp = await cloud.get(path, purpose="billing")
    assert resp.headers["ETag"] == f'"{won["version"]}"'

    # A stale tag, a missing object, a weak tag: 412 and nothing changes. Not an entity tag: 400.
    assert (await cloud.put(path, b"late", **{"If-Match": tag})).status == 412
    assert (await cloud.put(f"{customer}/billing/none", b"x", **{"If-Match": "*"})).status == 412
    assert (await cloud.put(path, b"weak", **{"If-Match": f"W/{tag}"})).status == 412
    resp = await cloud.put(path, b"bad", **{"If-Match": "0001"})
    assert resp.status == 400 and "If-Match" in (await resp.json())["message"]
    resp = await cloud.client.delete(f"/v1/objects/{path}", headers={**cloud.auth, "If-Match": tag})
    assert resp.status == 412
    resp = await cloud.get(path, purpose="billing")
    assert await resp.read() in (b"writer A", b"writer B")
    resp = await cloud.client.delete(
        f"/v1/objects/{path}", headers={**cloud.auth, "If-Match": f'"other", "{won["version"]}"'}
    )
    assert resp.status == 200
    # If-None-Match on a read: 304 for the version it would send.
    v3 = await created(await cloud.put(path, b"card 3"))
    resp = await cloud.client.get(
        f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "billing", "If-None-Match": f'"{v3["version"]}"'}
    )
    assert resp.status == 304 and resp.headers["ETag"] == f'"{v3["version"]}"' and await resp.read() == b""
    resp = await cloud.client.get(
        f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "billing", "If-None-Match": tag}
    )
    assert resp.status == 200 and await resp.read() == b"card 3"


async def test_range_reads_are_byte_exact_at_segment_boundaries(cloud):
    customer = f"eve-{uid()}"
    path = f"{customer}/project/disk.img"
    size = FIRST + 2 * LATER + 777  # four segments, the last a short one
    body = os.urandom(size)
    await created(await cloud.put(path, body))
    edges = [0, 1, FIRST - 1, FIRST, FIRST + 1, FIRST + LATER - 1, FIRST + LATER, size - 2, size - 1]
    cases = [(f"bytes={a}-{a}", a, a) for a in edges]
    cases += [(f"bytes={a}-{b}", a, min(b, size - 1)) for a, b in [(0, FIRST), (FIRST - 1, FIRST + LATER), (5, size)]]
    cases += [
        (f"bytes={size - 10}-", size - 10, size - 1),
        ("bytes=-1", size - 1, size - 1),
        ("bytes=-300", size - 300, size - 1),
    ]
    cases += [(f"bytes=-{size + 5}", 0, size - 1)]
    for header, first, last in cases:
        resp = await cloud.client.get(
            f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "service", "Range": header}
        )
        assert resp.status == 206, (header, resp.status)
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert await resp.read() == body[first : last + 1], header
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        resp = await cloud.client.get(
            f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "service", "Range": header}
        )
        assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{size}", header
        assert (await resp.json())["error"] == "range_not_satisfiable"
    for header in ("bytes=0-1,5-6", "bytes=9-3", "items=0-1", "bytes=x-"):  # the whole object, as RFC 9110 allows
        resp = await cloud.client.get(
            f"/v1/objects/{path}", headers={**cloud.auth, "X-Purpose": "service", "Range": header}
        )
        assert resp.status == 200 and await resp.read() == body, header
    # Both regions are level: a read served by the near region alone journals nothing for the workers.
    await asyncio.sleep(0.3)  # let the workers finish anything journaled
    metrics = await (await cloud.client.get("/metrics")).text()
    assert "replicator_replicated_total{" not in metrics, [m for m in metrics.splitlines() if "replicated" in m]
    # A range read is audited like any read.
    records = cloud.audit_log.read_text().splitlines()
    assert sum('"action":"read"' in r for r in records) >= len(cases)


async def test_erasure_leaves_no_version_readable_then_none_stored(cloud):
    customer = f"fay-{uid()}"
    path = f"{customer}/account/phone"
    v1 = await created(await cloud.put(path, b"+1 555 0100"))
    await created(await cloud.put(path, b"+1 555 0199"))
    assert (await cloud.delete(path)).status == 200
    resp = await cloud.client.delete(f"/v1/customers/{customer}", headers=cloud.auth)
    assert resp.status == 202
    erasure = (await resp.json())["erasure"]
    assert (await read_version(cloud, path, v1["version"])).status == 410
    assert (await restore(cloud, path, v1["version"])).status == 410

    async def swept():
        r = await cloud.client.get(f"/v1/erasures/{erasure}", headers=cloud.auth)
        return (await r.json())["state"] == "done"

    await eventually(swept, timeout=30, what="the erasure sweep")
    prefix = cloud.prefix(customer)
    assert await cloud.stores.azure_names(prefix) == []
    assert await cloud.stores.swift_names(prefix=prefix) == []


async def test_a_kept_version_never_outlives_its_class_retention(tmp_path, clock, stores):
    """A class that keeps versions 60 days but data only 90: a version written on day 0 and superseded on day 50
    is 410 on day 91 (its retention), not kept until day 110, and the reconciler removes it."""
    policy = DEFAULT_POLICY.read_text().replace(
        "retention = 90  # days\nkeep_versions_days = 0", "retention = 90  # days\nkeep_versions_days = 60"
    )
    assert "keep_versions_days = 60" in policy
    cloud, client = await start_cloud(tmp_path / "svc", stores, clock, policy=policy)
    try:
        customer = f"gus-{uid()}"
        path = f"{customer}/visit/2026-01-01"
        v1 = await created(await cloud.put(path, b"ip=203.0.113.9"))
        clock.advance(50)
        await created(await cloud.put(path, b"ip=198.51.100.7"))
        assert (await read_version(cloud, path, v1["version"], "analytics")).status == 200
        clock.advance(41)  # day 91
        resp = await read_version(cloud, path, v1["version"], "analytics")
        assert resp.status == 410 and (await resp.json())["error"] == "gone"
        assert (await restore(cloud, path, v1["version"])).status == 410
        kept = f"{cloud.path(customer, 'visit', '2026-01-01')}/{v1['version']}"
        assert await cloud.stores.azure_names(kept) == [kept]

        service = cloud.service
        report = await Reconciler(
            service.regions["ca"],
            service.regions["jp"],
            now_ms=clock(),
            retention=retention_of(service.policy),
            keep=keep_of(service.policy),
            destroyed=set(),
            grace_ms=7 * DAY_MS,
        ).run([cloud.prefix(customer)])
        assert report.error_count == 0, report.errors
        assert await cloud.stores.azure_names(kept) == []
        assert await cloud.stores.swift_names(prefix=kept) == []
    finally:
        await client.close()


async def test_classes_that_keep_no_versions_store_none(cloud):
    customer = f"hal-{uid()}"
    path = f"{customer}/session/cookie"
    await created(await cloud.put(path, b"sid=1"))
    await created(await cloud.put(path, b"sid=2"))
    assert (await cloud.delete(path)).status == 200
    object_path = cloud.path(customer, "session", "cookie")
    assert await cloud.stores.azure_names(cloud.prefix(customer)) == [object_path]  # the tombstone alone
    assert [v["deleted"] for v in await versions(cloud, path)] == [True]


async def test_every_access_is_audited_writes_deletes_listings_restores_and_denials(cloud):
    import json

    customer = f"ivy-{uid()}"
    path = f"{customer}/account/email"
    v1 = await created(await cloud.put(path, b"ivy@example.com"))
    assert (await cloud.delete(path)).status == 200
    await versions(cloud, path)
    await created(await restore(cloud, path, v1["version"]))
    resp = await cloud.client.get(f"/v1/objects/{customer}", headers=cloud.limited)  # account only
    assert resp.status == 200
    assert (await cloud.put(f"{customer}/billing/card", b"x", auth=cloud.limited)).status == 403
    await asyncio.sleep(0.2)  # a denial's record is written in the background
    ctag = cloud.service.tagger.customer_tag(customer)
    records = [json.loads(line) for line in cloud.audit_log.read_text().splitlines()]
    mine = [(r["action"], r["outcome"], r["class"]) for r in records if r["customer_tag"] == ctag]
    assert mine == [
        ("write", "allowed", "account"),
        ("delete", "allowed", "account"),
        ("versions", "allowed", "account"),
        ("restore", "allowed", "account"),  # the restore's new version is this record's
        ("list", "allowed", "account"),
        ("write", "denied", "billing"),
    ], mine
    assert customer not in cloud.audit_log.read_text()  # tags only
