"""An event loop on its own thread, for synchronous callers of an asyncio driver.

The ``KeyProvider`` contract is synchronous (the service calls it through
``asyncio.to_thread``), and asyncpg is asynchronous and bound to the loop its
pool was made on: the key store keeps its pool on this private loop, so its
calls work the same from a worker thread, a command without a loop, or a test.
A caller on another loop (the service's hot paths) awaits ``arun``: two
thread hops a call instead of four.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for it; ``TimeoutError`` (and the coroutine cancelled)
        after ``timeout`` seconds."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop: it would wait for itself")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer in {timeout:g} s") from None

    async def arun(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """``run`` for a caller on another event loop: one hop to this loop and one back, with no
        worker thread between; cancelling the caller cancels ``coro``."""
        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"no answer in {timeout:g} s") from None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
