"""A read on the PostgreSQL key store: one key-store call for the keys and the erasure together
(``keys_for_read``), and an erased customer's read is 410 before anything else, conditional and
ranged reads included."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from replicator.config import load_config
from replicator.http import handlers
from replicator.http.app import build_app
from tests.support.pg import drop_schema, key_store_config
from tests.support.stack import stack_fixture


@stack_fixture
def service_config(tmp_path, monkeypatch):
    config, token, url = key_store_config(tmp_path / "var", "reads", monkeypatch)
    yield config, token
    asyncio.run(drop_schema(url))


async def test_a_read_asks_the_key_store_once_and_an_erased_customer_is_410_first(service_config):
    config_path, token = service_config
    app = build_app(load_config(config_path), workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        read = {**auth, "X-Purpose": "contact"}
        keys = app[handlers.SERVICE].keys
        resp = await client.put("/v1/objects/ada/account/card", data=b"4111 1111 1111 1111", headers=auth)
        assert resp.status == 201, await resp.text()
        version = (await resp.json())["version"]

        calls: list[str] = []
        for method in ("keys_for_read", "get_dek", "get_name_key", "destroyed_at"):
            real = getattr(keys, method)
            setattr(keys, method, lambda *args, real=real, method=method: calls.append(method) or real(*args))
        awaited = keys.keys_for_read_async

        async def keys_for_read_async(*args):
            calls.append("keys_for_read_async")
            return await awaited(*args)

        keys.keys_for_read_async = keys_for_read_async
        resp = await client.get("/v1/objects/ada/account/card", headers=read)
        assert resp.status == 200 and await resp.read() == b"4111 1111 1111 1111"
        # The keys and the erasure, one call (one query), awaited on the key store's loop.
        assert calls == ["keys_for_read_async"]

        not_modified = {**read, "If-None-Match": f'"{version}"'}
        assert (await client.get("/v1/objects/ada/account/card", headers=not_modified)).status == 304

        await asyncio.to_thread(keys.destroy, "ada")
        for headers in (read, not_modified, {**read, "Range": "bytes=0-3"}, {**read, "Range": "bytes=500-"}):
            resp = await client.get("/v1/objects/ada/account/card", headers=headers)
            asked = {k: v for k, v in headers.items() if k != "Authorization"}
            assert resp.status == 410 and (await resp.json())["error"] == "gone", (asked, resp.status)
        resp = await client.get("/v1/objects/ada/account/never-written", headers=read)
        assert resp.status == 410, resp.status
