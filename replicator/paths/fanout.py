"""Stream one body to several consumers at once, each at its own pace, in bounded memory.

``FanOut(source, n)`` gives ``n`` async iterators over the same chunks, each
fed through a small queue; the source is read only as fast as the slowest
*live* consumer takes chunks. The caller ``release``\\ s a consumer when its
put ends, however it ends (a put may fail before it ever reads), so a failed
region never holds the others back. An error raised by the source (client
hung up, a SIN found, body too large) is raised in every live consumer, so
every region's put fails and nothing half-written becomes visible.

``gather`` runs the puts under a no-progress deadline, not a total timeout: a
consumer that holds chunks it has not taken (or has taken the last one and
not finished) for ``no_progress`` seconds is stalled, its put is cancelled
and counts as ``Unavailable``, so a far region that stops moving bytes makes
the write degraded while a merely slow one keeps going as long as it moves.
A consumer waiting on an empty queue is never stalled: the client or the
other region is the slow one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from regions import Unavailable as RegionUnavailable

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
        self._moved = [0.0] * n  # loop time consumer i last took an item (or started)
        self._idle = [False] * n  # consumer i waits on an empty queue: not its fault

    def consumer(self, i: int) -> AsyncIterator[bytes]:
        return self._consume(i)

    def stalled(self, i: int, no_progress: float) -> bool:
        """Consumer ``i`` had data to take (or its put to finish) and did nothing for ``no_progress`` s."""
        loop = asyncio.get_running_loop()
        return self._live[i] and not self._idle[i] and loop.time() - self._moved[i] > no_progress

    async def gather(self, regions: Sequence[str], puts: Sequence[Awaitable[Any]], no_progress: float) -> list[Any]:
        """Run one put per consumer, outcomes as ``gather(return_exceptions=True)`` gives them; a put
        whose consumer is stalled for ``no_progress`` seconds is cancelled and is an ``Unavailable``."""
        loop = asyncio.get_running_loop()
        self._moved = [loop.time()] * len(self._queues)
        tasks = [asyncio.ensure_future(p) for p in puts]
        stalled: set[int] = set()
        try:
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=min(1.0, no_progress / 4))
                for i, task in enumerate(tasks):
                    if not task.done() and self.stalled(i, no_progress):
                        stalled.add(i)
                        task.cancel()
        finally:
            for task in tasks:
                task.cancel()  # we were cancelled: no put outlives the request
        outcomes: list[Any] = []
        for i, task in enumerate(tasks):
            if i in stalled and task.cancelled():
                outcomes.append(RegionUnavailable(f"no progress for {no_progress:g}s", region=regions[i]))
            elif task.cancelled():
                outcomes.append(asyncio.CancelledError())
            else:
                outcomes.append(task.exception() or task.result())
        return outcomes

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

    async def _consume(self, i: int) -> AsyncIterator[bytes]:
        q, loop = self._queues[i], asyncio.get_running_loop()
        while True:
            self._idle[i] = q.empty()
            item = await q.get()
            self._idle[i] = False
            self._moved[i] = loop.time()
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
