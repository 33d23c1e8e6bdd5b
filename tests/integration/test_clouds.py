"""The privacy promises of docs/privacy.md, shown against the real stores of the dev stack.

The service runs in-process (aiohttp ``TestClient``) with region ``ca`` on
Azurite (Azure Blob, 1 MiB blocks) and region ``jp`` on Swift behind
Keystone v3 (1 MiB static-large-object segments), each on a container made
for the test and removed after it. What the stores hold is read behind the
service's back with the SDKs and the credentials alone (``clouds.Stores``).
The two outage tests stop a real server mid-run (Azurite with SIGTERM, the
Swift proxy with SIGSTOP) and always bring it back.

The servers are required: without ``deploy/dev/stack env`` the tests fail
(``tests.support.stack.stack_env``), they never skip.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import tarfile
import time

import pytest
from azure.core.exceptions import ResourceNotFoundError

from keys.audit import verify
from tests.support.clouds import (
    MiB,
    leaks,
    server,
    stack_up,
    start_cloud,
    stop,
)
from tests.support.eventually import eventually
from tests.support.stack import stack_env

CLASSES = "account|billing|project|session|visit"
TAG = r"[a-z2-7]{8,}"
REGION_NAME = re.compile(rf"v1/({TAG})/({CLASSES})/({TAG})")
SEGMENT_NAME = re.compile(r"\d{10}-[0-9a-f]{32}/\d{8}")
OUR_META = {"version", "cls", "wtime", "dek", "sname", "tomb"}


@pytest.fixture
async def cloud(tmp_path, clock, stores):
    c, client = await start_cloud(tmp_path / "svc", stores, clock)
    try:
        yield c
    finally:
        await client.close()


def uid() -> str:
    """8 random characters (base32: never a run of digits that could read as a SIN)."""
    return base64.b32encode(os.urandom(5)).decode().lower()


async def chunked(data: bytes, size: int = 256 * 1024):
    """The body as a chunked upload (no Content-Length): the service streams it."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def marked(marker: bytes, size: int) -> bytes:
    """``size`` bytes of plaintext with ``marker`` every 4 KiB, the rest random."""
    out = bytearray()
    while len(out) < size:
        out += marker + os.urandom(4096 - len(marker))
    return bytes(out[:size])


async def created(resp, replication: str = "complete") -> dict:
    assert resp.status == 201, await resp.text()
    result = await resp.json()
    assert result["replication"] == replication, result
    return result


# -- 1. ciphertext only; names and metadata carry no customer identifier -----------------------------


async def test_stores_hold_ciphertext_only_and_no_identifier(cloud):
    stores = cloud.stores
    u = uid()
    customer = f"ada-lovelace-{u}"
    small_name = f"contacts/Ada Lovelace {u}.vcf"
    mid_name = f"hosting/ada-{u}-server-inventory.json"
    big_name = f"paypal/ada-{u}-statements.pdf"
    content_type = f"text/x-ada-private-{u}"
    email = f"ada.{u}@analytical-engine.example"
    small = f"BEGIN:VCARD\nFN:Ada Lovelace\nEMAIL:{email}\nNOTE:first programmer\nEND:VCARD\n".encode()
    mid_marker, big_marker = f"SERVER-INVENTORY-{u}|".encode(), f"PAYPAL-STATEMENT-{u}|".encode()
    mid = marked(mid_marker, 3 * MiB + 321)  # buffered put (under 4 MiB), 4 blocks / 4 segments
    big = marked(big_marker, 5 * MiB + 123)  # streamed put (chunked): 6 blocks / 6 segments
    objects = {("account", small_name): small, ("project", mid_name): mid, ("billing", big_name): big}

    await created(await cloud.put(f"{customer}/account/{small_name}", small, **{"Content-Type": content_type}))
    await created(await cloud.put(f"{customer}/project/{mid_name}", mid))
    await created(await cloud.put(f"{customer}/billing/{big_name}", chunked(big)))
    for (cls, name), data in objects.items():  # the service itself reads them back
        resp = await cloud.get(
            f"{customer}/{cls}/{name}", purpose={"account": "contact", "project": "service", "billing": "billing"}[cls]
        )
        assert resp.status == 200 and await resp.read() == data
        head = await cloud.head(f"{customer}/{cls}/{name}")
        assert head.headers["X-Object-Size"] == str(len(data)) and head.headers["X-Replication"] == "complete"

    azure, swift = await stores.azure_objects(), await stores.swift_objects()
    paths = {cloud.path(customer, cls, name) for cls, name in objects}

    # Names: v1/<customer tag>/<class>/<name tag>, the same three in both regions, one customer tag.
    # The node's shipped audit chain sits beside them under audit/<node id>/ (tags only: scanned below too).
    audit = re.compile(r"audit/it/(\d{12}|checkpoint)")
    assert all(audit.fullmatch(o.name) for o in azure if o.name.startswith("audit/"))
    azure_blobs = {o.name: o for o in azure if o.name and not o.name.startswith("audit/")}
    swift_main = {
        o.name: o for o in swift if o.name and o.container == stores.swift_container and not o.name.startswith("audit/")
    }
    swift_segments = [o for o in swift if o.name and o.container == stores.segments]
    assert set(azure_blobs) == set(swift_main) == paths
    assert len({REGION_NAME.fullmatch(p)[1] for p in paths}) == 1
    assert all(SEGMENT_NAME.fullmatch(s.name) for s in swift_segments), [s.name for s in swift_segments]

    # Large bodies really crossed Azure blocks and Swift segments (SLO).
    by_class = {REGION_NAME.fullmatch(p)[2]: p for p in paths}
    assert azure_blobs[by_class["account"]].fields["committed-blocks"] == "0"  # one Put Blob
    assert int(azure_blobs[by_class["project"]].fields["committed-blocks"]) >= 4
    assert int(azure_blobs[by_class["billing"]].fields["committed-blocks"]) >= 6
    assert swift_main[by_class["account"]].fields.get("header:X-Static-Large-Object") is None
    for cls, at_least in (("project", 4), ("billing", 6)):
        manifest = json.loads(swift_main[by_class[cls]].fields["manifest"])
        assert len(manifest) >= at_least
        assert all(m["name"].startswith(f"/{stores.segments}/") for m in manifest)
    assert len(swift_segments) >= 10

    # Metadata: only the service's own keys; the real name and content type are sealed.
    for o in azure_blobs.values():
        assert {k.split(":", 1)[1] for k in o.fields if k.startswith("meta:")} <= OUR_META | {"x_sha256"}
        assert o.fields["content:content_type"] == "application/octet-stream"
    for o in swift_main.values():
        assert o.fields["header:Content-Type"].startswith("application/x-replicator;")
        assert {k.split(":", 1)[1] for k in o.fields if k.startswith("meta-decoded:")} <= OUR_META
        assert not any(k.lower().startswith("header:x-object-meta-") for k in o.fields)

    # Bodies: ciphertext, byte-identical in both regions (replication moves ciphertext only).
    for p in paths:
        plain = objects[next(k for k in objects if cloud.path(customer, *k) == p)]
        stored = azure_blobs[p].body
        assert stored == swift_main[p].body
        assert len(stored) > len(plain) and plain[:4096] not in stored and stored[-4096:] not in plain

    # Nothing that identifies the customer or their data, in any encoding, anywhere in either store.
    secrets = {
        "customer id": customer,
        "email": email,
        "content type": content_type,
        "marker (project)": mid_marker,
        "marker (billing)": big_marker,
        "plaintext (vcard)": small[:32],
    }
    for _cls, name in objects:
        secrets[f"name {name}"] = name
        secrets[f"name leaf {name}"] = name.rsplit("/", 1)[1]
    assert leaks(azure + swift, secrets) == []


# -- 2. a read without the right purpose is refused and audited --------------------------------------


async def test_wrong_purpose_is_403_and_audited_as_denied(cloud):
    customer, name = f"grace-{uid()}", f"profile/grace-{uid()}.txt"
    path = f"{customer}/account/{name}"
    await created(await cloud.put(path, b"grace@example.com", auth=cloud.limited))

    denied = []
    resp = await cloud.get(path, purpose="analytics")  # the class never allows analytics
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    denied.append(("all", "analytics"))
    resp = await cloud.get(path, purpose="service", auth=cloud.limited)  # allowed purpose, scope missing
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    denied.append(("limited", "service"))
    resp = await cloud.get(path, purpose="contact", auth=cloud.limited)  # its own scope
    assert resp.status == 200 and await resp.read() == b"grace@example.com"

    # The limited principal is refused everything else it has no scope for.
    assert (await cloud.put(f"{customer}/billing/card", b"x", auth=cloud.limited)).status == 403
    assert (await cloud.delete(path, auth=cloud.limited)).status == 403
    assert (await cloud.client.delete(f"/v1/customers/{customer}", headers=cloud.limited)).status == 403
    assert (await cloud.client.get(f"/v1/customers/{customer}/export", headers=cloud.limited)).status == 403
    assert (await cloud.head(f"{customer}/billing/card", auth=cloud.limited)).status == 403
    assert (await cloud.head(path, auth=cloud.limited)).status == 200
    assert (await cloud.get(path)).status == 200  # the object is intact

    ctag, cls, ntag = cloud.path(customer, "account", name).split("/")[1:]
    records = [json.loads(line) for line in cloud.audit_log.read_text().splitlines()]
    reads = [
        (r["principal"], r["purpose"], r["outcome"])
        for r in records
        if r["action"] == "read" and r["customer_tag"] == ctag and r["name_tag"] == ntag and r["class"] == cls
    ]
    assert reads == [(p, purpose, "denied") for p, purpose in denied] + [
        ("limited", "contact", "allowed"),
        ("all", "service", "allowed"),
    ]
    result = verify(cloud.audit_log)
    assert result.ok and result.records == len(records), result
    text = cloud.audit_log.read_text()
    assert customer not in text and name not in text and "grace@example.com" not in text


# -- 3. a SIN is refused and nothing reaches either store --------------------------------------------


async def test_sin_write_is_422_and_nothing_is_stored(cloud):
    stores = cloud.stores
    customer = f"sin-{uid()}"
    resp = await cloud.put(f"{customer}/account/notes", b"my SIN is 130 692 544, keep it safe")
    assert resp.status == 422
    error = await resp.json()
    assert error["error"] == "sin_refused" and "130" not in error["message"]

    # A streamed body whose SIN (dashed) comes after 4 MiB: the client holds it back until both
    # stores show ciphertext of this put in flight (Swift segments, Azure staged blocks).
    seen = {}

    async def body():
        for _ in range(16):
            yield os.urandom(256 * 1024)

        async def in_flight():
            seen["segments"] = await stores.swift_names(stores.segments)
            seen["staged"] = await stores.azure_names("v1/", uncommitted=True)
            return seen["segments"] and seen["staged"]

        await eventually(in_flight, timeout=15, what="ciphertext of the put reaching both stores")
        yield os.urandom(1000) + b" 193-456-787 " + os.urandom(1000)
        yield os.urandom(MiB)

    resp = await cloud.put(f"{customer}/project/scan.bin", body())
    assert resp.status == 422 and (await resp.json())["error"] == "sin_refused"
    assert seen["staged"] == [cloud.path(customer, "project", "scan.bin")]
    big = bytearray(os.urandom(3 * MiB))
    big[2 * MiB - 6 : 2 * MiB + 7] = b" 193-456-787 "  # across the 2 MiB mark, buffered put
    resp = await cloud.put(f"{customer}/project/scan2.bin", bytes(big))
    assert resp.status == 422

    for name, cls in (("notes", "account"), ("scan.bin", "project"), ("scan2.bin", "project")):
        assert (await cloud.head(f"{customer}/{cls}/{name}")).status == 404
    prefix = cloud.prefix(customer)
    assert await stores.azure_names("v1/") == []  # (the node's shipped audit chain is under audit/)
    assert await stores.swift_names(prefix="v1/") == []
    assert await stores.swift_names(stores.segments) == []  # the segments in flight were removed
    # Azure keeps the staged blocks of a failed put (never readable, dropped after a week): at most
    # uncommitted ciphertext under the tag name, never a committed blob.
    assert all(n.startswith(prefix) for n in await stores.azure_names("v1/", uncommitted=True))

    # The customer can still write what is allowed.
    await created(await cloud.put(f"{customer}/account/notes", b"no numbers here"))


# -- 4. visit data is gone after 90 days -------------------------------------------------------------


async def test_visit_older_than_90_days_is_gone(cloud, clock):
    customer = f"visitor-{uid()}"
    old = await created(await cloud.put(f"{customer}/visit/2026-01-01", b"ip=203.0.113.9 ua=Firefox/140"))
    assert (await cloud.get(f"{customer}/visit/2026-01-01", purpose="analytics")).status == 200
    clock.advance(89)
    assert (await cloud.get(f"{customer}/visit/2026-01-01", purpose="analytics")).status == 200
    clock.advance(2)  # 91 days after the write
    fresh = await created(await cloud.put(f"{customer}/visit/2026-04-02", b"ip=198.51.100.7"))

    resp = await cloud.get(f"{customer}/visit/2026-01-01", purpose="analytics")
    assert resp.status == 410 and (await resp.json())["error"] == "gone"
    assert (await cloud.head(f"{customer}/visit/2026-01-01")).status == 410
    resp = await cloud.get(f"{customer}/visit/2026-04-02", purpose="analytics")
    assert resp.status == 200 and resp.headers["X-Version"] == fresh["version"]
    resp = await cloud.client.get(f"/v1/objects/{customer}", params={"class": "visit"}, headers=cloud.auth)
    listing = await resp.json()
    assert [(o["name"], o["version"]) for o in listing["objects"]] == [("2026-04-02", fresh["version"])]

    # Unreadable at once, while the ciphertext still sits in both regions for the nightly reconciler.
    path = cloud.path(customer, "visit", "2026-01-01")
    assert (await cloud.stores.azure_head(path))["version"] == old["version"]
    assert (await cloud.stores.swift_head(path))[1]["version"] == old["version"]


# -- 5. erasure ----------------------------------------------------------------------------------------


async def test_erasure_shreds_at_once_then_empties_both_stores(cloud):
    stores = cloud.stores
    eve, bob = f"eve-{uid()}", f"bob-{uid()}"
    eve_objects = {
        "account/email": b"eve@example.com",
        "billing/paypal": b"paypal:eve",
        "visit/2026-03-01": b"ip=192.0.2.1",
        "project/archive.tar": os.urandom(2 * MiB + 99),
    }
    bob_objects = {"account/email": b"bob@example.com", "project/archive.tar": os.urandom(2 * MiB + 7)}
    for key, data in eve_objects.items():
        await created(await cloud.put(f"{eve}/{key}", data))
    await created(await cloud.put(f"{eve}/account/old", b"deleted before"))
    assert (await cloud.delete(f"{eve}/account/old")).status == 200  # a tombstone is erased too
    for key, data in bob_objects.items():
        await created(await cloud.put(f"{bob}/{key}", data))
    eve_prefix, bob_prefix = cloud.prefix(eve), cloud.prefix(bob)

    async def eve_archive_segments() -> set[str]:
        return {
            m["name"].split("/", 2)[2] for m in await stores.swift_manifest(cloud.path(eve, "project", "archive.tar"))
        }

    eve_segments = await eve_archive_segments()
    # An overwrite keeps the object it replaces (a copy with segments of its own), then replaces exactly
    # that write (if_match), after which Swift's driver deletes the replaced segments; any a crash leaves
    # behind are the erasure's to find, with the kept copy's.
    await created(await cloud.put(f"{eve}/project/archive.tar", eve_objects["project/archive.tar"]))
    replaced, eve_segments = eve_segments, eve_segments | await eve_archive_segments()
    assert replaced < eve_segments
    bob_before = {p: (await stores.azure_head(p))["version"] for p in await stores.azure_names(bob_prefix)}
    # Four objects and a tombstone, and the two versions account and project keep: the deleted one, the overwritten one.
    assert len(await stores.azure_names(eve_prefix)) == len(await stores.swift_names(prefix=eve_prefix)) == 7

    assert (await cloud.client.delete(f"/v1/customers/{eve}", headers=cloud.limited)).status == 403
    resp = await cloud.client.delete(f"/v1/customers/{eve}", headers=cloud.auth)
    assert resp.status == 202, await resp.text()
    receipt = await resp.json()
    assert receipt["erasure"] and receipt["key_destroyed_at"]
    # Crypto-shredded: unreadable at once, whatever the sweep has reached.
    for key in eve_objects:
        cls = key.split("/")[0]
        resp = await cloud.get(
            f"{eve}/{key}",
            purpose={"account": "service", "billing": "billing", "visit": "analytics", "project": "service"}[cls],
        )
        assert resp.status == 410, (key, resp.status)
        assert (await cloud.head(f"{eve}/{key}")).status == 410
    assert (await cloud.client.get(f"/v1/customers/{eve}/export", headers=cloud.auth)).status == 410
    assert (await cloud.put(f"{eve}/account/again", b"new")).status == 410

    async def done():
        r = await cloud.client.get(f"/v1/erasures/{receipt['erasure']}", headers=cloud.auth)
        assert r.status == 200
        status = await r.json()
        return status if status["state"] == "done" else None

    status = await eventually(done, timeout=30, what="the erasure sweep finishing")
    # The five objects and tombstone, and the two kept versions.
    assert status["regions"] == {"ca": {"deleted": 7, "remaining": 0}, "jp": {"deleted": 7, "remaining": 0}}
    assert await stores.azure_names(eve_prefix) == []
    assert await stores.swift_names(prefix=eve_prefix) == []
    assert eve_segments and not eve_segments & set(await stores.swift_names(stores.segments))

    # Bob is untouched: same objects, same versions, same bytes.
    assert {p: (await stores.azure_head(p))["version"] for p in await stores.azure_names(bob_prefix)} == bob_before
    assert sorted(await stores.swift_names(prefix=bob_prefix)) == sorted(bob_before)
    for key, data in bob_objects.items():
        resp = await cloud.get(f"{bob}/{key}")
        assert resp.status == 200 and await resp.read() == data


# -- 6. subject-access export -----------------------------------------------------------------------------


async def test_export_is_exactly_the_live_objects(cloud, clock):
    carol, dave = f"carol-{uid()}", f"dave-{uid()}"
    await created(await cloud.put(f"{carol}/visit/expired", b"ip=203.0.113.50"))
    clock.advance(91)  # that visit is now past retention
    live = {
        ("account", "email"): (b"carol@example.com", "text/plain"),
        ("account", "nested/dir/notes \u00e9t\u00e9.txt"): (b"unicode name", "text/plain; charset=utf-8"),
        ("billing", "paypal"): (b"paypal:carol", "application/json"),
        ("visit", "today"): (b"ip=198.51.100.20", "application/octet-stream"),
        ("project", "site.tar"): (os.urandom(3 * MiB + 17), "application/x-tar"),
    }
    versions = {}
    await created(await cloud.put(f"{carol}/account/email", b"old@example.com"))  # overwritten below
    for (cls, name), (data, ctype) in live.items():
        body = chunked(data) if len(data) > MiB else data
        versions[(cls, name)] = (
            await created(await cloud.put(f"{carol}/{cls}/{name}", body, **{"Content-Type": ctype}))
        )["version"]
    await created(await cloud.put(f"{carol}/account/deleted", b"gone"))
    assert (await cloud.delete(f"{carol}/account/deleted")).status == 200
    await created(await cloud.put(f"{dave}/account/email", b"dave@example.com"))

    assert (await cloud.client.get(f"/v1/customers/{carol}/export", headers=cloud.limited)).status == 403
    resp = await cloud.client.get(f"/v1/customers/{carol}/export", headers=cloud.auth)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-tar"
    tar = tarfile.open(fileobj=io.BytesIO(await resp.read()))
    members = [m.name for m in tar.getmembers()]
    assert members[-2:] == ["access-history.json", "manifest.json"]
    assert sorted(members[:-2]) == sorted(f"{cls}/{name}" for cls, name in live)
    for (cls, name), (data, _) in live.items():
        assert tar.extractfile(f"{cls}/{name}").read() == data, (cls, name)
    manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["customer"] == carol
    assert sorted(
        (o["class"], o["name"], o["version"], o["size"], o["content_type"]) for o in manifest["objects"]
    ) == sorted((cls, name, versions[(cls, name)], len(data), ctype) for (cls, name), (data, ctype) in live.items())

    records = [json.loads(line) for line in cloud.audit_log.read_text().splitlines()]
    exports = [r for r in records if r["action"] == "export"]
    carol_tag = cloud.prefix(carol).split("/")[1]
    assert [(r["principal"], r["customer_tag"], r["outcome"]) for r in exports] == [
        ("limited", carol_tag, "denied"),  # the refused export is audited too
        ("all", carol_tag, "allowed"),
    ]
    assert verify(cloud.audit_log).ok

    # The customer's access history (GDPR Art. 15): every write, the denied and the granted export,
    # who and for which purpose; nothing about dave, no token.
    history = json.loads(tar.extractfile("access-history.json").read())
    assert history["complete"] is True and history["problems"] == []
    carols = [r for r in records if r["customer_tag"] == carol_tag]
    assert [
        (a["time"], a["node"], a["principal"], a["action"], a["class"], a["purpose"], a["outcome"])
        for a in history["accesses"]
    ] == [(r["time"], "it", r["principal"], r["action"], r["class"], r["purpose"], r["outcome"]) for r in carols]
    seen = [(a["principal"], a["action"], a["class"], a["outcome"]) for a in history["accesses"]]
    assert seen.count(("all", "write", "account", "allowed")) == 4 and ("all", "delete", "account", "allowed") in seen
    assert [s for s in seen if s[1] == "export"] == [
        ("limited", "export", None, "denied"),
        ("all", "export", None, "allowed"),
    ]
    assert any(r["customer_tag"] == cloud.prefix(dave).split("/")[1] for r in records)  # dave's write: not in it
    assert cloud.auth["Authorization"].split()[1] not in json.dumps(history)


# -- 7, 8. a real region outage loses no acknowledged write ---------------------------------------------


async def _outage_writes(cloud, customer, acked, down):
    """Writes during an outage (all at once, so a hanging region costs its deadline once):
    new names, overwrites of names written before, a streamed large object and a delete."""
    started = time.monotonic()

    async def put(name, data, body=None):
        result = await created(await cloud.put(f"{customer}/account/{name}", body or data), "degraded")
        assert result["regions"] == {r: ("pending" if r == down else "stored") for r in ("ca", "jp")}
        acked[name] = (data, result["version"])

    async def delete(name):
        resp = await cloud.delete(f"{customer}/account/{name}")
        assert resp.status == 200, await resp.text()
        result = await resp.json()
        assert result["regions"] == {r: ("pending" if r == down else "deleted") for r in ("ca", "jp")}
        acked[name] = (None, result["version"])

    big = os.urandom(2 * MiB + 5)
    await asyncio.gather(
        *(put(f"during-{i}", b"during %d" % i) for i in range(3)),
        put("before-0", b"overwritten during the outage"),
        put("big-during", big, chunked(big)),
        delete("before-1"),
    )
    return time.monotonic() - started


async def _reads_work(cloud, customer, acked):
    async def read(name, data, version):
        resp = await cloud.get(f"{customer}/account/{name}")
        if data is None:
            assert resp.status == 404, name
            return
        assert resp.status == 200, (name, resp.status, await resp.text())
        assert await resp.read() == data and resp.headers["X-Version"] == version, name

    await asyncio.gather(*(read(n, d, v) for n, (d, v) in acked.items()))


async def _wait_level(cloud, customer, acked, timeout=60):
    """Until HEAD says ``complete`` for every live name, and both stores hold every tombstone."""

    async def tombstone_in_both(name, version):
        path = cloud.path(customer, "account", name)
        try:
            return (
                (await cloud.stores.azure_head(path))["version"]
                == version
                == (await cloud.stores.swift_head(path))[1]["version"]
            )
        except (ResourceNotFoundError, AssertionError):
            return False

    async def level():
        heads = await asyncio.gather(
            *(cloud.head(f"{customer}/account/{n}") for n, (d, _) in acked.items() if d is not None)
        )
        tombs = await asyncio.gather(*(tombstone_in_both(n, v) for n, (d, v) in acked.items() if d is None))
        return all(h.status == 200 and h.headers["X-Replication"] == "complete" for h in heads) and all(tombs)

    await eventually(level, timeout=timeout, interval=0.25, what="the workers bringing the returning region level")


async def _check_both_stores(cloud, customer, acked):
    await cloud.stores.check_level({cloud.path(customer, "account", n): write for n, write in acked.items()})


async def test_azure_outage_degrades_writes_and_loses_nothing(cloud):
    azurite = server(stack_env("REPLICATOR_TEST_STACK_DIR"), "azurite", "azurite")
    customer, acked = f"outage-ca-{uid()}", {}
    for i in range(3):
        acked[f"before-{i}"] = (
            b"before %d" % i,
            (await created(await cloud.put(f"{customer}/account/before-{i}", b"before %d" % i)))["version"],
        )
    try:
        await stop(azurite)
        took = await _outage_writes(cloud, customer, acked, "ca")
        assert took < 10, f"degraded writes took {took:.1f}s with Azure refusing connections"
        await _reads_work(cloud, customer, acked)  # served from Swift
        head = await cloud.head(f"{customer}/account/during-0")
        assert head.headers["X-Replication"] == "pending"
        assert "ca=unavailable" in head.headers["X-Replication-Regions"]
        resp = await cloud.put(f"{customer}/account/both", b"x", **{"If-None-Match": "*"})
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"  # create-only needs both regions
    finally:
        await stack_up()  # always: the other tests need Azurite
    await _wait_level(cloud, customer, acked)
    await _check_both_stores(cloud, customer, acked)
    await _reads_work(cloud, customer, acked)


async def test_swift_outage_hang_degrades_writes_and_loses_nothing(cloud):
    proxy = server(stack_env("REPLICATOR_TEST_STACK_DIR"), "swift-proxy", "swift-proxy-server")
    customer, acked = f"outage-jp-{uid()}", {}
    for i in range(3):
        acked[f"before-{i}"] = (
            b"before %d" % i,
            (await created(await cloud.put(f"{customer}/account/before-{i}", b"before %d" % i)))["version"],
        )
    os.kill(proxy.pid, signal.SIGSTOP)  # a hang, not a refusal: connections open, nothing answers
    try:
        took = await _outage_writes(cloud, customer, acked, "jp")
        # request_timeout 2 s x 2 attempts (+ 1 s per MiB for a segment upload): bounded, not a hang.
        assert took < 20, f"degraded writes took {took:.1f}s with Swift hanging"
        await _reads_work(cloud, customer, acked)  # served from Azure
        head = await cloud.head(f"{customer}/account/during-0")
        assert head.headers["X-Replication"] == "pending"
        assert "jp=unavailable" in head.headers["X-Replication-Regions"]
    finally:
        os.kill(proxy.pid, signal.SIGCONT)  # always: the other tests need Swift
    await _wait_level(cloud, customer, acked)
    await _check_both_stores(cloud, customer, acked)
    await _reads_work(cloud, customer, acked)
