"""Crypto-shredding (docs/privacy.md §7 "You can always delete your account"; issue 8, item 5), on Azurite + Swift.

An attacker (or an over-eager backup) holds, from before the erasure, the raw
ciphertext of every replica of a customer's objects from both stores, and a
copy of the keyring file. After ``DELETE /v1/customers/{customer}``:

* the keyring the service runs with cannot decrypt any copy: the customer's
  wrapped DEK is gone from the file, not only from memory (``KeyDestroyed``);
* both stores hold nothing under the customer's tag (committed or
  uncommitted Azure blobs, Swift objects and static-large-object segments);
* the limit ``keys/keyring/local.py`` states: the *pre-erasure keyring backup* with
  the *old KEK* still decrypts; after ``rotate_kek`` to a new key file and
  discarding the old one, that backup opens with no KEK anyone still has;
* a replica copied back into a store is still refused (410).

The service runs in process (``tests.support.clouds.start_cloud``: key-file
KEK, 1 MiB Azure blocks and Swift segments); the stores are read and written
behind its back with the SDKs only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from keys import KeyDestroyed, KeyFile, LocalKeyring, WrongPassphrase
from keys.stream import decrypt_bytes, object_ad
from tests.support.clouds import MiB, start_cloud
from tests.support.eventually import eventually

EVE = {
    ("account", "profile/email"): b"eve@example.com",
    ("billing", "paypal"): b"paypal: eve.payments@example.com",
    ("project", "site/archive.tar"): os.urandom(2 * MiB + 99),
}  # 3 blocks / 3 segments


async def _raw_copies(cloud, customer: str) -> list[dict]:
    """Every replica of the customer's objects, straight from both stores: body and metadata."""
    copies = []
    for (cls, name), plain in EVE.items():
        path = cloud.path(customer, cls, name)
        azure_meta = await cloud.stores.azure_head(path)
        _, swift_meta = await cloud.stores.swift_head(path)
        for store, body, meta in (
            ("azure", await cloud.stores.azure_body(path), azure_meta),
            ("swift", await cloud.stores.swift_body(path), swift_meta),
        ):
            assert plain[:16] not in body
            copies.append(
                {
                    "store": store,
                    "class": cls,
                    "name": name,
                    "path": path,
                    "plain": plain,
                    "body": body,
                    "meta": meta,
                    "ad": object_ad(customer, cls, name, meta["version"]),
                }
            )
    return copies


def _decrypts(copy: dict, keyring: LocalKeyring) -> bool:
    return decrypt_bytes(copy["body"], keyring.get_dek, copy["ad"]) == copy["plain"]


async def test_erasure_shreds_every_copy_and_empties_both_stores(tmp_path, stores):
    directory = tmp_path / "svc"
    cloud, client = await start_cloud(directory, stores, None)
    try:
        await _scenario(cloud, directory, tmp_path / "aside")
    finally:
        await client.close()


async def _scenario(cloud, directory: Path, aside: Path):
    u = os.urandom(4).hex()
    eve, bob = f"eve-{u}", f"bob-{u}"
    for (cls, name), data in EVE.items():
        resp = await cloud.put(f"{eve}/{cls}/{name}", data)
        assert resp.status == 201 and (await resp.json())["replication"] == "complete", await resp.text()
    assert (await cloud.put(f"{bob}/account/profile/email", b"bob@example.com")).status == 201
    eve_prefix = cloud.prefix(eve)
    big = cloud.path(eve, "project", "site/archive.tar")
    eve_segments = {m["name"].split("/", 2)[2] for m in await cloud.stores.swift_manifest(big)}
    assert len(eve_segments) >= 3

    # Set aside, before the erasure: every replica's raw ciphertext, the keyring file and the KEK.
    aside.mkdir()
    copies = await _raw_copies(cloud, eve)
    assert len(copies) == 6 and len({c["meta"]["dek"] for c in copies}) == 1
    dek_id = copies[0]["meta"]["dek"]
    keyring_file, kek_file = directory / "keyring.json", directory / "kek.key"
    shutil.copy2(keyring_file, aside / "keyring.json")  # 0600 kept: the keyring insists on it
    old_kek = aside / "old-kek.key"
    shutil.copy2(kek_file, old_kek)
    wrapped_before = json.loads(keyring_file.read_text())["deks"][dek_id]["wrapped"]
    backup = LocalKeyring.open(aside / "keyring.json", KeyFile(old_kek))
    assert all(_decrypts(c, backup) for c in copies)  # the copies are real: decryptable now
    backup.close()

    # Erase.
    resp = await cloud.client.delete(f"/v1/customers/{eve}", headers=cloud.auth)
    assert resp.status == 202, await resp.text()
    receipt = await resp.json()

    async def done():
        r = await cloud.client.get(f"/v1/erasures/{receipt['erasure']}", headers=cloud.auth)
        status = await r.json()
        return status if status["state"] == "done" else None

    status = await eventually(done, timeout=30, what="the erasure sweep finishing")
    assert status["regions"] == {"ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 3, "remaining": 0}}

    # 1. The keyring cannot decrypt any copy: neither the service's, nor the file opened afresh.
    service_keys = cloud.service.keys
    with pytest.raises(KeyDestroyed):
        service_keys.get_dek(dek_id)
    current = LocalKeyring.open(keyring_file, KeyFile(kek_file))
    for copy in copies:
        with pytest.raises(KeyDestroyed):
            decrypt_bytes(copy["body"], current.get_dek, copy["ad"])
    state = json.loads(keyring_file.read_text())
    assert dek_id not in state["deks"] and dek_id in state["destroyed"]
    assert wrapped_before not in keyring_file.read_text()  # the wrapped DEK is gone from the file
    current.close()

    # 2. Nothing under Eve's tag in either store; Bob untouched.
    assert await cloud.stores.azure_names(eve_prefix, uncommitted=True) == []
    assert await cloud.stores.swift_names(prefix=eve_prefix) == []
    assert not eve_segments & set(await cloud.stores.swift_names(cloud.stores.segments))
    resp = await cloud.get(f"{bob}/account/profile/email")
    assert resp.status == 200 and await resp.read() == b"bob@example.com"

    # 3. The stated limit: the keyring backup taken before the erasure, with the old KEK, still decrypts...
    backup = LocalKeyring.open(aside / "keyring.json", KeyFile(old_kek))
    assert all(_decrypts(c, backup) for c in copies)
    backup.close()
    # ...until the KEK is rotated to a new key file and the old one discarded.
    new_kek = directory / "kek.new"
    KeyFile.generate(new_kek)
    await asyncio.to_thread(service_keys.rotate_kek, KeyFile(new_kek))
    os.replace(new_kek, kek_file)  # the config's key file is now the new KEK
    old_kek.unlink()  # and the old one is gone, here as from every other place
    with pytest.raises(WrongPassphrase):  # the backup: no KEK anyone still holds opens it
        LocalKeyring.open(aside / "keyring.json", KeyFile(kek_file))
    rotated = LocalKeyring.open(keyring_file, KeyFile(kek_file))
    for copy in copies:
        with pytest.raises(KeyDestroyed):
            decrypt_bytes(copy["body"], rotated.get_dek, copy["ad"])
    rotated.close()
    resp = await cloud.get(f"{bob}/account/profile/email")  # the service still reads what is live
    assert resp.status == 200 and await resp.read() == b"bob@example.com"

    # 4. A replica copied back into a store is refused, and its name is no way back in.
    copy = next(c for c in copies if c["store"] == "azure" and c["class"] == "account")
    async with cloud.stores.azure() as svc:
        blob = svc.get_blob_client(cloud.stores.azure_container, copy["path"])
        # As the driver stores metadata: every value percent-encoded, "" as "%" (regions/azure.py).
        meta = {k: quote(v, safe="") if v else "%" for k, v in copy["meta"].items()}
        await blob.upload_blob(copy["body"], metadata=meta)
    assert await cloud.stores.azure_names(eve_prefix) == [copy["path"]]
    resp = await cloud.get(f"{eve}/account/profile/email")
    assert resp.status == 410 and copy["plain"] not in await resp.read()
    assert (await cloud.head(f"{eve}/account/profile/email")).status == 410
    assert (await cloud.client.get(f"/v1/customers/{eve}/export", headers=cloud.auth)).status == 410
