"""The asyncio client: :class:`AsyncClient`, the same calls as :class:`~replicator.client.sync.Client`, awaited.

It speaks HTTP through aiohttp (the sync client through httpx): through httpx's
async connection pool a small request cost seven to nine times the client CPU
it costs through aiohttp (``bench/client.py``). Uploads also take an async
iterator of bytes; file reads and writes run in a thread
(``asyncio.to_thread``) so a disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import quote, urlencode

import aiohttp
import yarl  # aiohttp's own URL type (a dependency of aiohttp)

from replicator.client import _calls, models
from replicator.client._bodies import AsyncBody, Upload
from replicator.client._calls import CHUNK, Call, parse_json
from replicator.client.errors import TransportError, error_from_answer, is_api_error
from replicator.client.models import ByteRange, ReadInfo
from replicator.client.retry import (
    AIOHTTP_TRANSPORT_ERRORS,
    DEFAULT_RETRY,
    NotSent,
    RetryPolicy,
    aiohttp_transport_error,
    tried,
)

Etags = str | Iterable[str]

#: Connections open to the service at once from one AsyncClient's own session; more calls wait for one.
CONNECTIONS = 100


class AsyncDownload:
    """An open read: ``info``, then the bytes by :meth:`iter_bytes` (``async for``), once; a body cut off
    mid-way raises :class:`~replicator.client.errors.TransportError`."""

    def __init__(self, response: aiohttp.ClientResponse, info: ReadInfo, what: str):
        self.info = info
        self._response = response
        self._what = what

    async def iter_bytes(self, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes, as they arrive."""
        try:
            async for chunk in self._response.content.iter_chunked(chunk_size):
                yield chunk
        except AIOHTTP_TRANSPORT_ERRORS as e:
            raise TransportError(f"{self._what}: the body was cut off: {type(e).__name__}: {e}") from e

    async def read(self) -> bytes:
        """The whole body in memory (for small objects)."""
        return b"".join([chunk async for chunk in self.iter_bytes()])


class AsyncClient:
    """The asyncio client of one replicator service; ``async with AsyncClient(url, token) as rc: ...``.

    ``timeout`` (seconds, or an ``aiohttp.ClientTimeout``) bounds each network operation of every call:
    opening a connection, and each wait for bytes of the answer; not a whole transfer, and not the wait
    for a free connection. ``session``: your own ``aiohttp.ClientSession`` (TLS, connector limits,
    tracing), used for every call and never closed by the client; without one, the client opens its own
    on first use (at most :data:`CONNECTIONS` connections, kept alive) and closes it in :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | aiohttp.ClientTimeout = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        session: aiohttp.ClientSession | None = None,
    ):
        if not token:
            raise ValueError("a token is required")
        base = yarl.URL(base_url)
        if not base.absolute or base.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8700, not {base_url!r}")
        self._base = str(base).rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeout, sock_read=timeout)
        self._timeout = timeout
        self._own_session = session is None
        self._session = session
        self.retry = retry

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- objects ----------------------------------------------------------------------------------

    async def put(
        self,
        customer: str,
        data_class: str,
        name: str,
        body: AsyncBody,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: Etags | None = None,
        content_length: int | None = None,
    ) -> models.WriteResult:
        """As :meth:`Client.put <replicator.client.sync.Client.put>`; ``body`` may be an async iterator too."""
        upload = Upload(body, content_length)
        call = _calls.put(
            customer,
            data_class,
            name,
            content_type=content_type,
            content_length=upload.length,
            if_none_match=if_none_match,
            if_match=if_match,
            replayable=upload.replayable,
        )
        return models.write_result(await self._json(call, upload))

    async def read(
        self,
        customer: str,
        data_class: str,
        name: str,
        *,
        purpose: str,
        version: str | None = None,
        byte_range: ByteRange | None = None,
    ) -> bytes:
        async with self.open(customer, data_class, name, purpose=purpose, version=version, byte_range=byte_range) as d:
            return await d.read()

    @contextlib.asynccontextmanager
    async def open(
        self,
        customer: str,
        data_class: str,
        name: str,
        *,
        purpose: str,
        version: str | None = None,
        byte_range: ByteRange | None = None,
        if_none_match: Etags | None = None,
    ) -> AsyncIterator[AsyncDownload]:
        """``async with client.open(...) as d: async for chunk in d.iter_bytes(): ...``"""
        call = _calls.read(
            customer,
            data_class,
            name,
            purpose=purpose,
            version=version,
            byte_range=byte_range,
            if_none_match=if_none_match,
        )
        response, _ = await self._send(call, stream=True)
        try:
            yield AsyncDownload(response, models.read_info(response.status, response.headers), call.what)
        finally:
            response.release()  # back to the pool when the body was read whole; closed otherwise

    async def download(
        self,
        customer: str,
        data_class: str,
        name: str,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        purpose: str,
        version: str | None = None,
        byte_range: ByteRange | None = None,
    ) -> ReadInfo:
        """Stream the object into ``target`` (a path, written whole or not at all, or an open binary file)."""
        async with self.open(customer, data_class, name, purpose=purpose, version=version, byte_range=byte_range) as d:
            await _write(target, d.iter_bytes())
            return d.info

    async def head(self, customer: str, data_class: str, name: str) -> models.ObjectHead:
        response, _ = await self._send(_calls.head(customer, data_class, name))
        return models.object_head(response.headers)

    async def delete(
        self, customer: str, data_class: str, name: str, *, if_match: Etags | None = None
    ) -> models.DeleteResult:
        return models.delete_result(await self._json(_calls.delete(customer, data_class, name, if_match=if_match)))

    async def versions(self, customer: str, data_class: str, name: str, *, purpose: str) -> list[models.VersionEntry]:
        return models.version_list(await self._json(_calls.versions(customer, data_class, name, purpose=purpose)))

    async def restore(self, customer: str, data_class: str, name: str, version: str) -> models.WriteResult:
        return models.write_result(await self._json(_calls.restore(customer, data_class, name, version)))

    async def list_page(
        self, customer: str, data_class: str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> models.ListPage:
        return models.list_page(await self._json(_calls.list_page(customer, data_class, cursor=cursor, limit=limit)))

    async def objects(
        self, customer: str, data_class: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[models.ObjectEntry]:
        cursor = None
        while True:
            page = await self.list_page(customer, data_class, cursor=cursor, limit=page_size)
            for entry in page.objects:
                yield entry
            if page.cursor is None:
                return
            cursor = page.cursor

    # -- customers and operations -----------------------------------------------------------------

    async def erase(self, customer: str) -> models.ErasureReceipt:
        return models.erasure_receipt(await self._json(_calls.erase(customer)))

    async def erasure(self, erasure_id: str) -> models.ErasureStatus:
        return models.erasure_status(await self._json(_calls.erasure(erasure_id)))

    async def export(self, customer: str, target: str | os.PathLike[str] | BinaryIO) -> None:
        call = _calls.export(customer)
        response, _ = await self._send(call, stream=True)
        try:
            await _write(target, AsyncDownload(response, ReadInfo("", 0, "application/x-tar"), call.what).iter_bytes())
        finally:
            response.release()

    async def ready(self) -> models.Readiness:
        """``/readyz``: ``status`` ok, degraded or unavailable (a 503 is an answer here, not an error)."""
        return models.readiness(await self._json(_calls.readyz(), ok=(200, 503)))

    # -- sending ----------------------------------------------------------------------------------

    async def _json(self, call: Call, upload: Upload | None = None, *, ok: tuple[int, ...] = ()) -> object:
        response, body = await self._send(call, upload, ok=ok)
        return parse_json(body, response.status, response.headers, call.what)

    async def _send(
        self, call: Call, upload: Upload | None = None, *, stream: bool = False, ok: tuple[int, ...] = ()
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """One call, tried again as :mod:`replicator.client.retry` allows; an error answer raises its exception.

        The answer and its body; with ``stream``, the body is left unread for the caller (who releases the
        response) and ``b""`` is returned in its place."""
        idempotent = call.idempotent and (upload is None or upload.replayable)
        return await tried(self.retry, idempotent, lambda: self._try(call, upload, stream, ok))

    async def _try(
        self, call: Call, upload: Upload | None, stream: bool, ok: tuple[int, ...]
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        if self._session is None:
            self._session = _own_session()
        url = self._base + call.path
        if call.params:
            url += "?" + urlencode(call.params, quote_via=quote)
        try:
            response = await self._session.request(
                call.method,
                yarl.URL(url, encoded=True),  # sent as _calls encoded it: no re-quoting, no dot-segment removal
                headers={**self._auth, **call.headers},
                data=upload.acontent() if upload is not None else None,
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
            )
        except AIOHTTP_TRANSPORT_ERRORS as e:
            error = aiohttp_transport_error(e, call.what)
            if isinstance(error, NotSent) and upload is not None and upload.started and not upload.replayable:
                error = TransportError(error.message)  # an iterator that gave chunks cannot give them again
            raise error from e
        if response.status >= 400:
            try:
                body = await response.read()
            except AIOHTTP_TRANSPORT_ERRORS:
                body = b""
            finally:
                response.release()
            # An answer ``ok`` allows (/readyz's 503 and its checks) is still an error in the API's error shape
            # (the 503 of a service out of connections).
            if response.status not in ok or is_api_error(body):
                raise error_from_answer(response.status, response.headers, body)
            return response, body
        if stream:
            return response, b""
        try:
            return response, await response.read()
        except AIOHTTP_TRANSPORT_ERRORS as e:
            raise aiohttp_transport_error(e, call.what) from e
        finally:
            response.release()


def _own_session() -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
    # One layer of retries (retry.py): aiohttp would otherwise send an idempotent request once more, on its own,
    # when the connection drops before the answer. (A private switch, the one aiohttp's own test client turns.)
    session._retry_connection = False
    return session


async def _write(target: str | os.PathLike[str] | BinaryIO, chunks: AsyncIterator[bytes]) -> None:
    """Stream ``chunks`` into an open binary file, or into a path: written whole or not at all."""
    if not isinstance(target, str | os.PathLike):
        async for chunk in chunks:
            await asyncio.to_thread(target.write, chunk)
        return
    path = Path(target)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as out:  # noqa: ASYNC230 (each write goes to a thread below)
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
