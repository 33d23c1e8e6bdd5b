"""The SIN check inside containers (docs/privacy.md §9; issue 16, item 6), on the real stores.

The service runs in-process with region ``ca`` on Azurite and ``jp`` on Swift behind Keystone v3
(``tests.support.clouds``), each on a container made for the test. A gzip'd CSV holding a SIN, a
zip holding an encrypted entry, and bombs (expansion ratio, nesting depth) are each refused with
the status and the limit named, and nothing is committed in either store: what the stores hold
is listed behind the service's back. A class that sets ``unscannable = "accept"`` stores the
encrypted entry.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import random
import zipfile

import pytest

from replicator.config import DEFAULT_POLICY
from tests.support.clouds import MiB, start_cloud


@pytest.fixture
async def cloud(tmp_path, clock, stores):
    # The packaged policy, but visit data may hold what cannot be scanned.
    policy = DEFAULT_POLICY.read_text().replace(
        'purposes = ["analytics"]', 'purposes = ["analytics"]\nunscannable = "accept"', 1
    )
    c, client = await start_cloud(tmp_path / "svc", stores, clock, policy=policy)
    try:
        yield c
    finally:
        await client.close()


def uid() -> str:
    return base64.b32encode(os.urandom(5)).decode().lower()


def csv(rows: int, sin_at: int | None = None, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    out = [b"id,name,token,amount\n"]
    for i in range(rows):
        token = base64.b32encode(rnd.randbytes(10)).decode()
        note = "130 692 544" if i == sin_at else str(rnd.randrange(1000))
        out.append(f"{i},user{rnd.randrange(10**4)},{token},{note}\n".encode())
    return b"".join(out)


async def chunked(data: bytes, size: int = 256 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def nothing_stored(cloud, customer: str, names: list[tuple[str, str]]) -> None:
    stores = cloud.stores
    for cls, name in names:
        assert (await cloud.head(f"{customer}/{cls}/{name}")).status == 404
    assert await stores.azure_names("v1/") == []  # the node's shipped audit chain is under audit/
    assert await stores.swift_names(prefix="v1/") == []
    assert await stores.swift_names(stores.segments) == []
    prefix = cloud.prefix(customer)  # Azure may keep a failed put's uncommitted blocks, never a blob
    assert all(n.startswith(prefix) for n in await stores.azure_names("v1/", uncommitted=True))


async def test_gzip_csv_with_a_sin_is_422_and_nothing_is_stored(cloud):
    customer = f"gz-{uid()}"
    small = gzip.compress(csv(200, sin_at=150))
    resp = await cloud.put(f"{customer}/account/people.csv.gz", small, **{"Content-Type": "application/gzip"})
    assert resp.status == 422, await resp.text()
    error = await resp.json()
    assert error["error"] == "sin_refused" and "130" not in error["message"]

    # Streamed (chunked, several MiB of ciphertext on its way to both stores) with the SIN near its end.
    big = gzip.compress(csv(240_000, sin_at=239_000), 6)
    assert len(big) > 4 * MiB
    resp = await cloud.put(f"{customer}/project/export.csv.gz", chunked(big))
    assert resp.status == 422 and (await resp.json())["error"] == "sin_refused"

    await nothing_stored(cloud, customer, [("account", "people.csv.gz"), ("project", "export.csv.gz")])

    # The same CSV without the SIN is stored, and reads back as it was sent.
    clean = gzip.compress(csv(200))
    resp = await cloud.put(f"{customer}/account/people.csv.gz", clean)
    assert resp.status == 201, await resp.text()
    assert await (await cloud.get(f"{customer}/account/people.csv.gz")).read() == clean


async def test_bombs_are_refused_naming_the_limit_and_nothing_is_stored(cloud):
    customer = f"bomb-{uid()}"
    ratio_bomb = gzip.compress(bytes(100 * MiB), 9)  # about 1000:1
    resp = await cloud.put(f"{customer}/account/zeros.gz", chunked(ratio_bomb, 64 * 1024))
    assert resp.status == 413, await resp.text()
    error = await resp.json()
    assert error["error"] == "too_large" and "max_expansion_ratio" in error["message"]

    deep = b"id,note\n1,hello\n"
    for i in range(4):  # gzip, zip, gzip, zip: one level past max_depth 3
        if i % 2 == 0:
            deep = gzip.compress(deep)
        else:
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as z:
                z.writestr(f"level{i}", deep)
            deep = out.getvalue()
    resp = await cloud.put(f"{customer}/account/deep.zip", deep)
    assert resp.status == 422
    error = await resp.json()
    assert error["error"] == "sin_refused" and "max_depth (3)" in error["message"]

    await nothing_stored(cloud, customer, [("account", "zeros.gz"), ("account", "deep.zip")])


def _zip_with_an_encrypted_entry() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sealed.csv", csv(50))
        z.writestr("open.csv", csv(50, seed=2))
    body = bytearray(out.getvalue())
    body[6] |= 1  # the first entry's local header: encrypted (bit 0), as a password-protected archive has it
    body[body.index(b"PK\x01\x02") + 8] |= 1  # and in the central directory
    return bytes(body)


async def test_unscannable_entry_is_refused_or_accepted_by_class(cloud):
    customer = f"enc-{uid()}"
    body = _zip_with_an_encrypted_entry()
    resp = await cloud.put(f"{customer}/account/archive.zip", body)
    assert resp.status == 422
    error = await resp.json()
    assert error["error"] == "sin_refused" and "zip entry 1 is encrypted" in error["message"]
    assert "sealed" not in error["message"]  # an entry's name is the customer's
    await nothing_stored(cloud, customer, [("account", "archive.zip")])

    assert _unscanned(await (await cloud.client.get("/metrics")).text()) == {}
    resp = await cloud.put(f"{customer}/visit/archive.zip", body)  # visit: unscannable = "accept"
    assert resp.status == 201, await resp.text()
    assert await (await cloud.get(f"{customer}/visit/archive.zip", purpose="analytics")).read() == body
    assert _unscanned(await (await cloud.client.get("/metrics")).text()) == {"visit": 1.0}  # operators see it


def _unscanned(metrics: str) -> dict[str, float]:
    """replicator_sin_unscanned_parts_total by data class."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("replicator_sin_unscanned_parts_total{"):
            labels, value = line.split("} ")
            out[labels.split('data_class="')[1].rstrip('"')] = float(value)
    return out
