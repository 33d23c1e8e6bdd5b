"""Concurrent calls of one kind, sent as one: group commit for statements on one connection.

A call waits while the one before is in flight; whatever queued meanwhile
goes out together in the next, one round trip for all. A call once
submitted is sent whether or not its caller still waits: a caller that may
be cancelled awaits it shielded, and undoes what it did (a lock taken for a
caller who left must be freed by that caller, exactly once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Together(Generic[T, R]):
    """``await together(kind, item)``: ``send(kind, items)`` answers a list of one answer per item."""

    def __init__(self, kinds: Sequence[str], send: Callable[[str, list[T]], Awaitable[list[R]]]) -> None:
        self._send = send
        self._queued: dict[str, list[tuple[T, asyncio.Future[R]]]] = {kind: [] for kind in kinds}
        self._pump: asyncio.Task[None] | None = None
        self._stopped: Exception = ConnectionError("stopped")

    async def __call__(self, kind: str, item: T) -> R:
        return await self.submit(kind, item)

    def fail(self, error: Exception) -> None:
        """Stop: every call queued or in flight raises ``error``."""
        self._stopped = error
        if self._pump is not None:
            self._pump.cancel()
        for batch in self._queued.values():
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            batch.clear()

    def submit(self, kind: str, item: T) -> asyncio.Future[R]:
        """Queue ``item``; its answer, sent even if nobody awaits it (a failure is then dropped)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_observed)
        self._queued[kind].append((item, future))
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while any(self._queued.values()):
                for kind in self._queued:
                    batch, self._queued[kind] = self._queued[kind], []
                    if batch:
                        await self._one(kind, batch)
                    batch = []
        except asyncio.CancelledError:
            for _, future in batch:  # in flight when stopped
                if not future.done():
                    future.set_exception(self._stopped)
            raise
        finally:
            self._pump = None

    async def _one(self, kind: str, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._send(kind, [item for item, _ in batch])
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # not failed by fail() meanwhile
                future.set_result(answer)


def _observed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
