"""Group commit: many concurrent callers, one durable write for all that queued meanwhile.

Callers on one event loop queue an item and wait; one committer task hands
everything queued to ``write_batch`` in a worker thread (which writes and
fsyncs it once) and gives each caller its own result, or the batch's
exception. A caller that is cancelled leaves its item in the batch: what
was queued is written whole. The first loop to call owns the committer; a
call from another loop is written alone in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, write_batch: Callable[[list[Item]], list[Result]]) -> None:
        self._write_batch = write_batch  # thread-safe; one result per item, in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._committer: asyncio.Future[None] | None = None

    async def append(self, item: Item) -> Result:
        """``item`` written durably, with the others queued meanwhile; its result."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                return (await asyncio.to_thread(self._write_batch, [item]))[0]
            self._loop, self._queue, self._committer = loop, [], None
        done: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, done))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit())
        return await asyncio.shield(done)

    async def _commit(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await asyncio.to_thread(self._write_batch, [item for item, _ in batch])
                except BaseException as exc:  # every caller of the batch gets it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("commit cancelled"))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
        finally:
            self._committer = None
