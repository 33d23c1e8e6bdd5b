"""Request bodies of an upload, streamed in chunks: never the whole object in memory.

* ``bytes`` (or ``bytearray``, ``memoryview``): sent as it is; can be sent again.
* a binary file (anything with ``read``): read ``CHUNK`` bytes at a time. A
  seekable one is sent from where it stands, with its ``Content-Length``, and
  can be sent again (seek back); a pipe or socket cannot.
* an iterator of ``bytes`` (and for the async client an async iterator):
  chunked transfer encoding, sent once.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import BinaryIO, Protocol

from replicator.client._calls import CHUNK


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Body = bytes | bytearray | memoryview | BinaryIO | Readable | Iterable[bytes]
AsyncBody = Body | AsyncIterable[bytes]


class Upload:
    """One upload's body; ``content()`` / ``acontent()`` give it afresh for each try."""

    def __init__(self, body: AsyncBody, content_length: int | None = None):
        self.body = body
        self.length = content_length
        self.started = False  # an iterator's first chunk was taken: it cannot be sent again
        self._file_start: int | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            self.length = len(body)
            self.replayable = True
        elif hasattr(body, "read"):
            self.replayable = _seekable(body)
            if self.replayable:
                self._file_start = body.tell()  # type: ignore[union-attr]
                end = body.seek(0, io.SEEK_END)  # type: ignore[union-attr]
                body.seek(self._file_start)  # type: ignore[union-attr]
                self.length = end - self._file_start
        elif isinstance(body, Iterable | AsyncIterable) and not isinstance(body, str):
            self.replayable = False
        else:
            raise TypeError(
                f"an upload body is bytes, a binary file or an iterator of bytes, not {type(body).__name__}"
            )

    def content(self) -> bytes | Iterator[bytes]:
        body = self.body
        if isinstance(body, bytes | bytearray | memoryview):
            return bytes(body)
        if hasattr(body, "read"):
            return self._file_chunks(body)  # type: ignore[arg-type]
        if isinstance(body, AsyncIterable):
            raise TypeError("an async iterator is a body for AsyncClient, not Client")
        return self._iterated(body)

    def acontent(self) -> bytes | AsyncIterator[bytes] | AsyncIterator[memoryview]:
        body = self.body
        if isinstance(body, bytes | bytearray | memoryview):
            # A large one in CHUNK slices of itself (its Content-Length is sent): aiohttp would copy a
            # bytes body whole into a new buffer with the headers, and asyncio what the socket did not take.
            return _slices(body) if len(body) > CHUNK else bytes(body)
        if hasattr(body, "read"):
            return self._afile_chunks(body)  # type: ignore[arg-type]
        if isinstance(body, AsyncIterable):
            return self._aiterated(body)
        return self._aiterated_sync(body)

    def _rewind(self, file: Readable) -> None:
        if self._file_start is not None:
            file.seek(self._file_start)  # type: ignore[attr-defined]

    def _file_chunks(self, file: Readable) -> Iterator[bytes]:
        self._rewind(file)
        self.started = True
        while chunk := file.read(CHUNK):
            yield chunk

    async def _afile_chunks(self, file: Readable) -> AsyncIterator[bytes]:
        self._rewind(file)
        self.started = True
        while chunk := await asyncio.to_thread(file.read, CHUNK):  # a disk read must not stall the loop
            yield chunk

    def _iterated(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        self.started = True
        for chunk in chunks:
            yield _bytes(chunk)

    async def _aiterated(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in chunks:
            yield _bytes(chunk)

    async def _aiterated_sync(self, chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
        self.started = True
        for chunk in chunks:
            yield _bytes(chunk)


async def _slices(body: bytes | bytearray | memoryview) -> AsyncIterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(view), CHUNK):
        yield view[start : start + CHUNK]  # a memoryview: sent as it is, not copied


def _seekable(file: object) -> bool:
    try:
        return bool(file.seekable()) and isinstance(file.tell(), int)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def _bytes(chunk: object) -> bytes:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise TypeError(f"an upload iterator must yield bytes, not {type(chunk).__name__}")
    return bytes(chunk)
