"""A Region wrapper that can be switched off or made to hang, for outage tests. It passes the conformance suite."""

import asyncio
import contextlib

from regions import Unavailable
from regions.base import check_meta, check_name, check_range


class FaultyRegion:
    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.features = inner.features  # sweeps are not faulted: as before
        self.down = False  # calls fail at once (a refusal)
        self.hung = False  # calls wait until this is cleared (a hang; the caller's deadlines must bound it)

    async def _check(self, name=None):
        while self.hung:
            await asyncio.sleep(0.01)
        if self.down:
            raise Unavailable("injected outage", region=self.name, name=name)

    async def put(self, name, body, meta, *, if_none_match=False, if_match=None):
        await self._check(name)
        return await self.inner.put(name, body, meta, if_none_match=if_none_match, if_match=if_match)

    async def get(self, name, *, byte_range=None):
        check_range(byte_range)  # a malformed range is a ValueError before any I/O, even when down
        await self._check(name)
        return await self.inner.get(name, byte_range=byte_range)

    async def head(self, name):
        await self._check(name)
        return await self.inner.head(name)

    async def copy(self, source, target, info, meta):
        check_name(source)  # bad names and metadata are a ValueError before any I/O, even when down
        check_name(target)
        check_meta(meta)
        await self._check(target)
        return await self.inner.copy(source, target, info, meta)

    async def delete(self, name, *, if_match=None):
        await self._check(name)
        await self.inner.delete(name, if_match=if_match)

    async def list(self, prefix=""):
        await self._check()
        async for info in self.inner.list(prefix):
            yield info

    async def close(self):
        await self.inner.close()


@contextlib.asynccontextmanager
async def faulty_service(config_path):
    """The service of ``config_path`` in-process, every region wrapped in a FaultyRegion.

    Yields ``(client, app, faulty)``: an aiohttp test client, the app, and the
    wrappers by region name. Workers poll every 50 ms so a returning region is
    levelled quickly.
    """
    from aiohttp.test_utils import TestClient, TestServer

    from replicator.config import load_config
    from replicator.http.app import build_app

    faulty = {}

    def wrap(region):
        faulty[region.name] = FaultyRegion(region)
        return faulty[region.name]

    app = build_app(load_config(config_path), wrap_region=wrap, workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        try:
            yield client, app, faulty
        finally:
            for region in faulty.values():
                region.hung = False  # a hung call must not outlive the test
