"""Stream one body to several consumers at once, each at its own pace, in bounded memory.

``FanOut(source, n)`` gives ``n`` async iterators over the same chunks, each
fed through a small queue; the source is read only as fast as the slowest
*live* consumer takes chunks. The caller ``release``\\ s a consumer when its
put ends, however it ends (a put may fail before it ever reads), so a failed
region never holds the others back. An error raised by the source (client
hung up, a SIN found, body too large) is raised in every live consumer, so
every region's put fails and nothing half-written becomes visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class FanOut:
    def __init__(self, source: AsyncIterator[bytes], n: int, depth: int = 4):
        self._source = source
        self._queues: list[asyncio.Queue] = [asyncio.Queue(depth) for _ in range(n)]
        self._live = [True] * n
        self._pump: asyncio.Task | None = None

    def consumer(self, i: int) -> AsyncIterator[bytes]:
        return self._consume(self._queues[i])

    def start(self) -> None:
        self._pump = asyncio.ensure_future(self._run())
        # A put that ends without wait() (cancelled while its regions wrote) would leave the
        # source's error, already raised in every consumer, to be logged "never retrieved".
        self._pump.add_done_callback(_retrieved)

    def release(self, i: int) -> None:
        """Consumer ``i`` will read no more: drop its queue so the pump never waits on it."""
        self._live[i] = False
        _drain(self._queues[i])

    async def wait(self) -> None:
        """Wait for the pump to finish; re-raises the source's error."""
        if self._pump is not None:
            await self._pump

    async def _run(self) -> None:
        try:
            async for chunk in self._source:
                if not any(self._live):
                    return
                for i, q in enumerate(self._queues):
                    if self._live[i]:
                        await q.put(chunk)  # release() drains, so this cannot wait on a dead consumer
        except BaseException as e:
            for i, q in enumerate(self._queues):
                if self._live[i]:
                    _drain(q)  # the consumer fails anyway: it must see the error, not old chunks
                    q.put_nowait(_Failed(e))
            raise
        for i, q in enumerate(self._queues):
            if self._live[i]:
                await q.put(_END)

    @staticmethod
    async def _consume(q: asyncio.Queue) -> AsyncIterator[bytes]:
        while True:
            item = await q.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item


def _retrieved(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def _drain(q: asyncio.Queue) -> None:
    while not q.empty():
        q.get_nowait()
