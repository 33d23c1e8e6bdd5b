"""A Region wrapper that can be switched off, for outage tests. It passes the conformance suite."""

from regions import Unavailable


class FaultyRegion:
    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.down = False

    def _check(self, name=None):
        if self.down:
            raise Unavailable("injected outage", region=self.name, name=name)

    async def put(self, name, body, meta, *, if_none_match=False, if_match=None):
        self._check(name)
        return await self.inner.put(name, body, meta, if_none_match=if_none_match, if_match=if_match)

    async def get(self, name):
        self._check(name)
        return await self.inner.get(name)

    async def head(self, name):
        self._check(name)
        return await self.inner.head(name)

    async def delete(self, name, *, if_match=None):
        self._check(name)
        await self.inner.delete(name, if_match=if_match)

    async def list(self, prefix=""):
        self._check()
        async for info in self.inner.list(prefix):
            yield info

    async def close(self):
        await self.inner.close()
