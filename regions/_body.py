"""Streaming helpers shared by the drivers: chunking a body and hashing it on the way."""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TypeVar

from .base import Body

# hashlib drops the GIL on big buffers: hash those in a worker thread, so the event loop (and the
# other region's upload on it) is not held while a whole block is hashed.
HASH_OFF_LOOP = 1 << 20

#: A part of a body: bytes as given, or a zero-copy slice of them.
Piece = bytes | memoryview
# A request body bigger than this goes out as zero-copy slices (see send_slices).
SEND_SLICE = 256 * 1024
T = TypeVar("T")
R = TypeVar("R")


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
            yield bytes(view[i : i + size])
        return
    pieces: list[Piece] = []
    have = 0
    async for piece in body:
        pieces.append(piece)
        have += len(piece)
        while have >= size:
            block, pieces = cut(pieces, size)
            have -= size
            yield block
    if have:
        yield b"".join(pieces)


async def send_slices(pieces: list[Piece]) -> AsyncIterator[memoryview]:
    """``pieces`` as zero-copy slices of at most ``SEND_SLICE`` bytes, for an HTTP body of known length.

    Given one big buffer, aiohttp (on Python < 3.12.9) joins the headers and
    the body into a new buffer, and asyncio then copies what the socket did
    not take: two more copies of a whole block or segment per request in
    flight, on the event loop. Slices are written one at a time with a drain
    between them, so neither copy is made.
    """
    for piece in pieces:
        view = memoryview(piece)
        for i in range(0, len(view), SEND_SLICE):
            yield view[i : i + SEND_SLICE]


def split(pieces: list[Piece], size: int) -> tuple[list[Piece], list[Piece]]:
    """The pieces that make the first ``size`` bytes of ``pieces`` (which hold at least that
    many), and the pieces left. No byte is copied: a piece cut in two becomes two memoryviews."""
    n = i = 0
    while n + len(pieces[i]) <= size:
        n += len(pieces[i])
        i += 1
        if n == size:
            break
    head, rest = pieces[:i], pieces[i:]
    if n < size:  # the block ends inside rest[0]
        view, k = memoryview(rest[0]), size - n
        head.append(view[:k])
        rest[0] = view[k:]
    return head, rest


def cut(pieces: list[Piece], size: int) -> tuple[bytes, list[Piece]]:
    """The first ``size`` bytes of ``pieces`` (which hold at least that many) as one ``bytes``, and
    the pieces left. Each byte is copied once, by the join; growing a bytearray to a whole block
    instead re-copied it on every resize, on the event loop."""
    head, rest = split(pieces, size)
    return (head[0] if len(head) == 1 and type(head[0]) is bytes else b"".join(head)), rest


async def window(stream: AsyncIterator[bytes], start: int, length: int) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``start + length`` of ``stream`` (for a store that sent the whole object
    when asked for a range); ``stream`` is closed once they are out."""
    at = 0
    try:
        async for chunk in stream:
            lo, hi = max(start - at, 0), min(start + length - at, len(chunk))
            at += len(chunk)
            if lo < hi:
                yield chunk if (lo, hi) == (0, len(chunk)) else chunk[lo:hi]
            if at >= start + length:
                return
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


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


class AheadBudget:
    """Bytes that a process's puts may hold in parts read ahead of their oldest upload, all puts
    together. Alone, each put reads ``ahead`` parts ahead; many large puts over a slow link
    would each hold that many, and the process's memory would grow with the number of puts.
    A put may always hold the one part it is uploading, so it never waits on another put."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


#: The drivers' budget: a little over a Swift segment and an Azure block in flight ahead for each
#: of several puts; one put alone is never held back by it.
READ_AHEAD = AheadBudget(48 << 20)


async def upload_ahead(
    parts: AsyncIterator[T],
    upload: Callable[[int, T], Awaitable[R]],
    *,
    ahead: int = 1,
    budget: AheadBudget | None = None,
    size: Callable[[T], int] = len,  # type: ignore[assignment]  # parts are sized things unless told
) -> list[R]:
    """``await upload(i, part)`` for every part, in order, reading the next part while up to
    ``ahead`` earlier ones upload; the results in order.

    A driver that read a block, uploaded it, then read the next, stalled the
    whole put: the body is fanned out to both regions at the pace of the
    slower, so the other region waited as well. A part starts uploading as
    soon as it is read, without waiting for the answer to the one before: over
    a WAN that answer is a round trip (150 ms Canada to Japan) in which the
    link would carry nothing, once per segment. Memory: the part being read
    and ``ahead`` parts in flight (``ahead`` + 1 in flight just after a part
    is read, none being read then). With a ``budget``, a part is read ahead of
    an upload in flight only while the budget has room for one more (``size``
    of the last part, held until that upload ends); otherwise the oldest
    upload is awaited first. The first failure (of an upload, or of
    ``parts``) cancels the uploads in flight and is raised.
    """
    results: list[R] = []
    flying: deque[asyncio.Future[R]] = deque()
    reserved = 0  # budget taken for the part being read, given back when its upload ends
    try:
        i = 0
        async for part in parts:
            task = asyncio.ensure_future(upload(i, part))
            if reserved and budget is not None:
                task.add_done_callback(partial(_give_back, budget, reserved))
                reserved = 0
            flying.append(task)
            i += 1
            last = 0 if budget is None else size(part)
            del part  # the task holds it until sent
            while flying:  # read the next part only while at most `ahead` upload, within the budget
                if len(flying) <= ahead and (budget is None or budget.take(last)):
                    reserved = last
                    break
                results.append(await flying.popleft())
        while flying:
            results.append(await flying.popleft())
        return results
    except BaseException:
        for future in flying:
            future.cancel()
        await asyncio.gather(*flying, return_exceptions=True)
        raise
    finally:
        if reserved and budget is not None:
            budget.give(reserved)


def _give_back(budget: AheadBudget, n: int, _: object) -> None:
    budget.give(n)
