"""Streaming helpers shared by the drivers: chunking a body and hashing it on the way."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from .base import Body

# hashlib drops the GIL on big buffers: hash those in a worker thread, so the event loop (and the
# other region's upload on it) is not held for the ~4 ms SHA-256 of an 8 MiB block takes here.
HASH_OFF_LOOP = 1 << 20


async def chunks(body: Body, size: int) -> AsyncIterator[bytes]:
    """Yield ``body`` (bytes or an async iterator) as chunks of exactly ``size`` bytes, the last shorter.

    Regrouping lets a driver cut blocks or segments of a fixed size from an
    iterator whose chunks have any size, holding at most one chunk extra.
    """
    if isinstance(body, bytes) and len(body) <= size:
        if body:
            yield body  # immutable: no copy needed
        return
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        for i in range(0, len(view), size):
            yield bytes(view[i:i + size])
        return
    buf = bytearray()
    async for piece in body:
        buf += piece
        while len(buf) >= size:
            with memoryview(buf) as view:  # one copy out (buf[:size] would be one more)
                block = bytes(view[:size])
            del buf[:size]
            yield block
    if buf:
        yield bytes(buf)


class Hashing:
    """Counts and hashes bytes as they pass: ``async for c in Hashing(src)``."""

    def __init__(self, source: AsyncIterator[bytes]):
        self._source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        async for chunk in self._source:
            if len(chunk) >= HASH_OFF_LOOP:
                await asyncio.to_thread(self.sha256.update, chunk)
            else:
                self.sha256.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        return self.sha256.hexdigest()
