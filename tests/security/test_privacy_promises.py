"""The privacy promises that had no test of their own (docs/privacy.md names every promise's tests).

* AES-256: what the service stores is read back by Tink's own AES256_GCM_HKDF
  streaming reader with the customer's 32-byte key, and nothing shorter is
  accepted as a key.
* Decrypted only when needed: writes, replication, HEAD and DELETE never ask
  the keyring for a data key; a read does, once. A listing opens names under
  the name key and asks for no data key (an object sealed before name keys is
  the audited, counted exception); once erased, the name key is gone too.
* Never shared with third parties: every connection the process opens while
  serving is to its two regions or Keystone (an audit hook on
  ``socket.connect``), on loopback.
* Only Canada and Japan: a config with a third region, or a region elsewhere,
  refuses to load and names the line.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from keys import _header, generate_token
from keys.provider import KeyDestroyed
from keys.stream import encrypt_bytes, object_ad
from keys.tags import LEGACY_SEAL, SealedNameInvalid, _seal, name_ad, open_name
from replicator.config import ConfigError, load_config
from replicator.embedded import LOCAL_REGIONS, all_scopes, config_text, ensure
from replicator.http import handlers as api_mod
from replicator.http.app import build_app
from replicator.layout import ObjectMeta, ObjectPath
from replicator.paths import write as write_mod
from tests.support.clouds import start_cloud
from tests.support.eventually import eventually
from tests.support.faulty import FaultyRegion
from tests.support.stack import stack_env
from tests.support.tinkkeys import tink_aes256

MiB = 1 << 20


async def _serve(var: Path, wrap=lambda region: region):
    config_path, token = ensure(var)
    app = build_app(load_config(config_path), wrap_region=wrap, workers_idle_wait=0.05)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, app, {"Authorization": f"Bearer {token}"}


# -- AES-256 -----------------------------------------------------------------------------------------


async def test_what_is_stored_is_aes_256_gcm_that_tink_decrypts(tmp_path):
    client, app, auth = await _serve(tmp_path / "var")
    try:
        plaintext = os.urandom(2 * MiB + 123)  # three segments of 1 MiB
        resp = await client.put("/v1/objects/ada/billing/statements/2026-10.pdf", data=plaintext, headers=auth)
        assert resp.status == 201, await resp.text()
        version = (await resp.json())["version"]
        service = app[api_mod.SERVICE]
        path = str(ObjectPath.of(service.tagger, "ada", "billing", "statements/2026-10.pdf"))
        for region in service.regions.values():  # both regions hold the same AES-256 ciphertext
            info, chunks = await region.get(path)
            stored = b"".join([c async for c in chunks])
            meta = ObjectMeta.of(info)
            dek = service.keys.get_dek(meta.dek_id)
            assert len(dek) == 32  # AES-256
            assert plaintext[:4096] not in stored
            ours = _header.size(meta.dek_id) - _header.TINK_HEADER_LEN  # our header, then Tink's stream
            segment = int.from_bytes(stored[len(_header.MAGIC) + 1 : len(_header.MAGIC) + 5], "big")
            tink = tink_aes256(dek, segment)
            ad = object_ad("ada", "billing", "statements/2026-10.pdf", version)
            with tink.new_decrypting_stream(io.BytesIO(stored[ours:]), ad) as stream:
                assert stream.read() == plaintext
        with pytest.raises(ValueError):  # an AES-128 (or any other) key length is refused outright
            encrypt_bytes(b"x", os.urandom(16), "dek_x", b"ad")
    finally:
        await client.close()


# -- decrypted only when needed ------------------------------------------------------------------------


async def test_only_an_authorized_read_asks_for_a_data_key(tmp_path):
    faulty = {}

    def wrap(region):
        faulty[region.name] = FaultyRegion(region)
        return faulty[region.name]

    client, app, auth = await _serve(tmp_path / "var", wrap)
    try:
        service = app[api_mod.SERVICE]
        asked = []
        for method in ("get_dek", "key_at_hand", "keys_for_read"):  # every way to a data key from its id
            real = getattr(service.keys, method)
            setattr(service.keys, method, lambda *args, real=real: asked.append(args[-1]) or real(*args))

        faulty["jp"].down = True  # a degraded write: replication has to copy it later
        for name in ("a", "b"):
            resp = await client.put(f"/v1/objects/ada/account/{name}", data=b"ada@example.com", headers=auth)
            assert resp.status == 201 and (await resp.json())["replication"] == "degraded"
        faulty["jp"].down = False

        async def level():
            resp = await client.head("/v1/objects/ada/account/a", headers=auth)
            return resp.headers.get("X-Replication") == "complete"

        await eventually(level, timeout=10, what="the workers copying the write to jp")
        assert (await client.delete("/v1/objects/ada/account/b", headers=auth)).status == 200
        assert (await client.head("/v1/objects/ada/account/a", headers=auth)).status == 200
        assert asked == []  # write, replicate, head, delete: no data key, so no decrypt possible

        denied = await client.get("/v1/objects/ada/account/a", headers={**auth, "X-Purpose": "analytics"})
        assert denied.status == 403 and asked == []  # refused before any key is fetched
        resp = await client.get("/v1/objects/ada/account/a", headers={**auth, "X-Purpose": "contact"})
        assert resp.status == 200 and await resp.read() == b"ada@example.com"
        assert len(set(asked)) == 1
        metrics = await (await client.get("/metrics")).text()
        assert 'replicator_decrypts_total{data_class="account",purpose="contact"} 1.0' in metrics
    finally:
        await client.close()


DATA_KEY_CALLS = (
    "get_dek",
    "key_at_hand",
    "keys_for_read",
    "get_or_create_dek",
    "dek_at_hand",
)  # every way to a data key


async def _serve_with_lister(var: Path):
    """The embedded service with two tokens: ``dev`` (every scope) and ``lister`` (``meta:account`` only)."""
    config_path, _ = ensure(var)
    (dev, dev_hash), (lister, lister_hash) = generate_token(), generate_token()
    principals = {"dev": (dev_hash, all_scopes()), "lister": (lister_hash, ["meta:account"])}
    config_path.write_text(config_text("dev", LOCAL_REGIONS, principals))
    app = build_app(load_config(config_path), workers_idle_wait=0.05)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, app, {"Authorization": f"Bearer {dev}"}, {"Authorization": f"Bearer {lister}"}


def _count_data_key_calls(keys) -> list[str]:
    asked: list[str] = []
    for method in DATA_KEY_CALLS:
        real = getattr(keys, method)
        setattr(keys, method, lambda *args, real=real, method=method: asked.append(method) or real(*args))
    return asked


def _audited(service, action: str) -> list[dict]:
    lines = service.audit.path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("action") == action]


async def test_a_listing_under_meta_scope_asks_for_no_data_key(tmp_path):
    client, app, auth, lister = await _serve_with_lister(tmp_path / "var")
    try:
        for name in ("a", "b/c"):
            resp = await client.put(f"/v1/objects/ada/account/{name}", data=b"ada@example.com", headers=auth)
            assert resp.status == 201
        service = app[api_mod.SERVICE]
        asked = _count_data_key_calls(service.keys)
        resp = await client.get("/v1/objects/ada/account/a", headers={**lister, "X-Purpose": "contact"})
        assert resp.status == 403 and asked == []  # the lister reads nothing
        resp = await client.get("/v1/objects/ada?class=account", headers=lister)
        assert resp.status == 200, await resp.text()
        assert sorted(o["name"] for o in (await resp.json())["objects"]) == ["a", "b/c"]
        resp = await client.get("/v1/objects/ada", headers=lister)  # every class it may see: account
        assert resp.status == 200 and len((await resp.json())["objects"]) == 2
        assert asked == []  # names opened under the name key: no content key was ever asked for
        listed = [r for r in _audited(service, "list") if r["principal"] == "lister"]
        assert len(listed) == 2 and {r["class"] for r in listed} == {"account"}
        assert _audited(service, "list-legacy-names") == []
    finally:
        await client.close()


async def test_a_name_sealed_before_name_keys_is_opened_with_the_data_key_audited_and_counted(tmp_path, monkeypatch):
    client, app, auth, lister = await _serve_with_lister(tmp_path / "var")
    try:
        service = app[api_mod.SERVICE]
        legacy = lambda _name_key, name, ct, ad: _seal(  # noqa: E731  as the code before name keys sealed
            service.keys.get_or_create_dek("ada").key, LEGACY_SEAL, name, ct, ad
        )
        monkeypatch.setattr(write_mod, "seal_name", legacy)
        assert (await client.put("/v1/objects/ada/account/old", data=b"x", headers=auth)).status == 201
        monkeypatch.undo()
        assert (await client.put("/v1/objects/ada/account/new", data=b"y", headers=auth)).status == 201
        asked = _count_data_key_calls(service.keys)
        resp = await client.get("/v1/objects/ada?class=account", headers=lister)
        assert sorted(o["name"] for o in (await resp.json())["objects"]) == ["new", "old"]
        assert asked == ["key_at_hand"]  # once, for the legacy seal only
        [record] = _audited(service, "list-legacy-names")
        assert record["principal"] == "lister" and record["class"] == "account"
        metrics = await (await client.get("/metrics")).text()
        assert 'replicator_legacy_name_opens_total{data_class="account"} 1.0' in metrics
        resp = await client.get("/v1/objects/ada/account/old", headers={**auth, "X-Purpose": "contact"})
        assert resp.status == 200 and await resp.read() == b"x"  # reads open legacy seals as before
    finally:
        await client.close()


async def test_after_erasure_names_cannot_be_opened(tmp_path):
    client, app, auth = await _serve(tmp_path / "var")
    try:
        assert (await client.put("/v1/objects/ada/account/secret-name", data=b"x", headers=auth)).status == 201
        service = app[api_mod.SERVICE]
        where = ObjectPath.of(service.tagger, "ada", "account", "secret-name")
        info, chunks = await service.regions["ca"].get(str(where))
        async for _ in chunks:
            pass
        meta = ObjectMeta.of(info)
        ad = name_ad(where.customer_tag, "account", where.name_tag)
        name_key = service.keys.get_name_key(meta.dek_id)
        assert open_name(name_key, meta.sealed_name, ad)[0] == "secret-name"
        assert (await client.delete("/v1/customers/ada", headers=auth)).status == 202
        with pytest.raises(KeyDestroyed):  # the name key went with the data key
            service.keys.get_name_key(meta.dek_id)
        with pytest.raises(SealedNameInvalid):  # and nothing else opens the name
            open_name(service.keys.tagger()._key, meta.sealed_name, ad)
        resp = await client.get("/v1/objects/ada?class=account", headers=auth)
        assert resp.status == 410  # erasure: the customer's listing is gone
        service.keys.reinstate("ada")  # even a reinstated customer's listing cannot name old objects
        resp = await client.get("/v1/objects/ada?class=account", headers=auth)
        assert resp.status in (200, 410)
        assert b"secret-name" not in await resp.read()
    finally:
        await client.close()


# -- never shared with third parties ------------------------------------------------------------------


class _Connections:
    """Every ``socket.connect`` address of this process while ``on`` (Python audit events; all threads)."""

    def __init__(self):
        self.on = False
        self.seen: list[tuple] = []
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)  # cannot be removed: it does nothing while off

    def _hook(self, event: str, args: tuple) -> None:
        if self.on and event == "socket.connect":
            with self._lock:
                self.seen.append(args[1])


_CONNECTIONS: _Connections | None = None


async def test_the_service_connects_only_to_its_regions_and_keystone(tmp_path, stores):
    global _CONNECTIONS
    _CONNECTIONS = _CONNECTIONS or _Connections()
    ports = json.loads((Path(stack_env("REPLICATOR_TEST_STACK_DIR")) / "stack.json").read_text())["ports"]
    # Recording starts before the service does: start-up reads both regions (the erasure ledger), and a
    # pooled connection opened then may serve every later request.
    _CONNECTIONS.on = True
    try:
        cloud, client = await start_cloud(tmp_path / "svc", stores, None)
    except BaseException:
        _CONNECTIONS.on = False
        raise
    allowed = {("127.0.0.1", ports[s]) for s in ("azurite", "keystone", "swift-proxy")}
    allowed.add(("127.0.0.1", client.port))  # the test's own client calling the service
    try:
        customer = "eve-connections"
        big = os.urandom(2 * MiB + 9)
        for name, body in (("account/email", b"eve@example.com"), ("project/site.tar", big)):
            assert (await cloud.put(f"{customer}/{name}", body)).status == 201
        assert (await cloud.get(f"{customer}/account/email")).status == 200
        assert (await cloud.head(f"{customer}/project/site.tar")).status == 200
        assert (await cloud.delete(f"{customer}/account/email")).status == 200
        resp = await cloud.client.get(f"/v1/customers/{customer}/export", headers=cloud.auth)
        assert resp.status == 200 and await resp.read()
        resp = await cloud.client.delete(f"/v1/customers/{customer}", headers=cloud.auth)
        assert resp.status == 202
        erasure = (await resp.json())["erasure"]

        async def swept():
            r = await cloud.client.get(f"/v1/erasures/{erasure}", headers=cloud.auth)
            return (await r.json())["state"] == "done"

        await eventually(swept, timeout=30, what="the erasure sweep")
        await asyncio.sleep(0.2)  # let the workers' last calls finish
    finally:
        _CONNECTIONS.on = False
        await client.close()
    seen = {tuple(a[:2]) for a in _CONNECTIONS.seen if isinstance(a, tuple)}
    assert seen, "no connection was seen: the audit hook is not working"
    assert seen - allowed == set(), f"connections beyond the two regions and Keystone: {seen - allowed}"
    assert {("127.0.0.1", ports["azurite"]), ("127.0.0.1", ports["swift-proxy"])} <= seen
    _CONNECTIONS.seen.clear()


# -- only Canada and Japan -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, error",
    [
        (
            lambda t: t + '\n[regions.us]\nkind = "local"\ncountry = "CA"\npath = "regions/us"\n',
            "exactly two regions are required, found 3",
        ),
        (
            lambda t: t.replace('country = "JP"', 'country = "US"'),
            "region 'jp': country 'US' is outside Canada and Japan",
        ),
        (
            lambda t: t.replace(
                '[regions.jp]\nkind = "local"\ncountry = "JP"\npath = "regions/jp"',
                '[regions.jp]\nkind = "azure"\nlocation = "eastus"\ncountry = "JP"\nconnection_string_env = "HOME"',
            ),
            "azure location 'eastus' is not in Canada or Japan",
        ),
        (
            lambda t: t.replace(
                '[regions.jp]\nkind = "local"\ncountry = "JP"\npath = "regions/jp"',
                '[regions.jp]\nkind = "azure"\nlocation = "canadacentral"\ncountry = "JP"\n'
                'connection_string_env = "HOME"',
            ),
            "azure location 'canadacentral' is in CA, not JP",
        ),
    ],
)
def test_a_region_outside_canada_and_japan_refuses_to_start(tmp_path, change, error):
    config_path, _ = ensure(tmp_path / "var")
    config_path.write_text(change(config_path.read_text()))
    with pytest.raises(ConfigError) as err:
        load_config(config_path)
    assert str(err.value).startswith(f"{config_path}:") and error in str(err.value), str(err.value)
