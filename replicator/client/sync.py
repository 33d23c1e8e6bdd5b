"""The blocking client: :class:`Client` (the async one, :class:`~replicator.client.aio.AsyncClient`, mirrors it)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx
import tenacity

from replicator.client import _calls, models
from replicator.client._bodies import Body, Upload
from replicator.client._calls import CHUNK, Call, parse_json
from replicator.client.errors import TransportError, error_from_answer, is_api_error
from replicator.client.models import ByteRange, ReadInfo
from replicator.client.retry import DEFAULT_RETRY, NotSent, RetryPolicy, httpx_transport_error, tenacity_args

Etags = str | Iterable[str]


class Download:
    """An open read: ``info`` (version, size, range), then the bytes by :meth:`iter_bytes`, once.

    A body cut off mid-way (the service aborts a read whose copy fails its check
    once plaintext flows) raises :class:`~replicator.client.errors.TransportError`:
    never a clean short read."""

    def __init__(self, response: httpx.Response, info: ReadInfo, what: str):
        self.info = info
        self._response = response
        self._what = what

    def iter_bytes(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes(chunk_size)
        except httpx.TransportError as e:
            raise TransportError(f"{self._what}: the body was cut off: {e}") from e

    def read(self) -> bytes:
        """The whole body in memory (for small objects)."""
        return b"".join(self.iter_bytes())


class Client:
    """A client of one replicator service (``base_url``, e.g. ``http://127.0.0.1:8700``) with one token.

    ``http`` may be an ``httpx.Client`` of your own (TLS settings, proxies,
    event hooks); its ``base_url`` is then ``base_url`` and the token header is
    added to each request. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        http: httpx.Client | None = None,
    ):
        if not token:
            raise ValueError("a token is required")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._http.base_url = httpx.URL(base_url)
        self.retry = retry

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- objects ----------------------------------------------------------------------------------

    def put(
        self,
        customer: str,
        data_class: str,
        name: str,
        body: Body,
        *,
        content_type: str | None = None,
        if_none_match: bool = False,
        if_match: Etags | None = None,
        content_length: int | None = None,
    ) -> models.WriteResult:
        """Store ``body`` (bytes, a binary file, or an iterator of bytes: streamed, never held whole).

        ``if_none_match=True`` creates only; ``if_match`` writes only over that version (or ``"*"``: any
        live one). ``content_length`` declares an iterator's size (the service refuses too large at once)."""
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
        return models.write_result(self._json(call, upload))

    def read(
        self,
        customer: str,
        data_class: str,
        name: str,
        *,
        purpose: str,
        version: str | None = None,
        byte_range: ByteRange | None = None,
    ) -> bytes:
        """The object's bytes, in memory: for small objects (use :meth:`open` or :meth:`download` for large)."""
        with self.open(customer, data_class, name, purpose=purpose, version=version, byte_range=byte_range) as d:
            return d.read()

    @contextlib.contextmanager
    def open(
        self,
        customer: str,
        data_class: str,
        name: str,
        *,
        purpose: str,
        version: str | None = None,
        byte_range: ByteRange | None = None,
        if_none_match: Etags | None = None,
    ) -> Iterator[Download]:
        """A streaming read: ``with client.open(...) as d: for chunk in d.iter_bytes(): ...``.

        ``version`` reads a kept version; ``byte_range`` one range (``d.info.content_range``);
        ``if_none_match`` a version you hold: ``d.info.not_modified`` when it is still the one."""
        call = _calls.read(
            customer,
            data_class,
            name,
            purpose=purpose,
            version=version,
            byte_range=byte_range,
            if_none_match=if_none_match,
        )
        response = self._send(call, stream=True)
        try:
            yield Download(response, models.read_info(response.status_code, response.headers), call.what)
        finally:
            response.close()

    def download(
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
        with self.open(customer, data_class, name, purpose=purpose, version=version, byte_range=byte_range) as d:
            _write(target, d.iter_bytes())
            return d.info

    def head(self, customer: str, data_class: str, name: str) -> models.ObjectHead:
        """Metadata and replication state; nothing is decrypted (scope ``meta:<class>``)."""
        response = self._send(_calls.head(customer, data_class, name))
        return models.object_head(response.headers)

    def delete(
        self, customer: str, data_class: str, name: str, *, if_match: Etags | None = None
    ) -> models.DeleteResult:
        return models.delete_result(self._json(_calls.delete(customer, data_class, name, if_match=if_match)))

    def versions(self, customer: str, data_class: str, name: str, *, purpose: str) -> list[models.VersionEntry]:
        """The kept versions, newest first, delete markers included."""
        return models.version_list(self._json(_calls.versions(customer, data_class, name, purpose=purpose)))

    def restore(self, customer: str, data_class: str, name: str, version: str) -> models.WriteResult:
        """Make ``version`` the current object again, as a new version (never tried twice)."""
        return models.write_result(self._json(_calls.restore(customer, data_class, name, version)))

    def list_page(
        self, customer: str, data_class: str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> models.ListPage:
        """One page of the customer's live objects (of one class, or every class the token may see)."""
        return models.list_page(self._json(_calls.list_page(customer, data_class, cursor=cursor, limit=limit)))

    def objects(
        self, customer: str, data_class: str | None = None, *, page_size: int = 100
    ) -> Iterator[models.ObjectEntry]:
        """Every live object, page after page."""
        cursor = None
        while True:
            page = self.list_page(customer, data_class, cursor=cursor, limit=page_size)
            yield from page.objects
            if page.cursor is None:
                return
            cursor = page.cursor

    # -- customers and operations -----------------------------------------------------------------

    def erase(self, customer: str) -> models.ErasureReceipt:
        """Crypto-shred the customer's data and sweep both regions (scope ``erase``)."""
        return models.erasure_receipt(self._json(_calls.erase(customer)))

    def erasure(self, erasure_id: str) -> models.ErasureStatus:
        return models.erasure_status(self._json(_calls.erasure(erasure_id)))

    def export(self, customer: str, target: str | os.PathLike[str] | BinaryIO) -> None:
        """Stream the customer's subject-access export (a tar) into ``target``."""
        call = _calls.export(customer)
        response = self._send(call, stream=True)
        try:
            _write(target, Download(response, ReadInfo("", 0, "application/x-tar"), call.what).iter_bytes())
        finally:
            response.close()

    def ready(self) -> models.Readiness:
        """``/readyz``: ``status`` ok, degraded or unavailable (a 503 is an answer here, not an error)."""
        call = _calls.readyz()
        return models.readiness(_json_of(self._send(call, ok=(200, 503)), call))

    # -- sending ----------------------------------------------------------------------------------

    def _json(self, call: Call, upload: Upload | None = None) -> object:
        return _json_of(self._send(call, upload), call)

    def _send(
        self, call: Call, upload: Upload | None = None, *, stream: bool = False, ok: tuple[int, ...] = ()
    ) -> httpx.Response:
        """One call, tried again as :mod:`replicator.client.retry` allows; an error answer raises its exception.

        With ``stream``, the answer's body is left unread for the caller (who closes the response)."""
        idempotent = call.idempotent and (upload is None or upload.replayable)
        for attempt in tenacity.Retrying(**tenacity_args(self.retry, idempotent)):
            with attempt:
                return self._try(call, upload, stream, ok)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _try(self, call: Call, upload: Upload | None, stream: bool, ok: tuple[int, ...]) -> httpx.Response:
        request = self._http.build_request(
            call.method,
            call.path,
            params=call.params,
            headers={**self._auth, **call.headers},
            content=upload.content() if upload is not None else None,
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as e:
            error = httpx_transport_error(e, call.what)
            if isinstance(error, NotSent) and upload is not None and upload.started and not upload.replayable:
                error = TransportError(error.message)  # an iterator that gave chunks cannot give them again
            raise error from e
        if response.status_code >= 400:
            try:
                body = response.read()
            except httpx.TransportError:
                body = b""
            finally:
                response.close()
            # An answer ``ok`` allows (/readyz's 503 and its checks) is still an error in the API's error shape
            # (the 503 of a service out of connections).
            if response.status_code not in ok or is_api_error(body):
                raise error_from_answer(response.status_code, response.headers, body)
            return response
        if not stream:
            try:
                response.read()
            except httpx.TransportError as e:
                raise httpx_transport_error(e, call.what) from e
            finally:
                response.close()
        return response


def _json_of(response: httpx.Response, call: Call) -> object:
    return parse_json(response.content, response.status_code, response.headers, call.what)


def _write(target: str | os.PathLike[str] | BinaryIO, chunks: Iterator[bytes]) -> None:
    """Stream ``chunks`` into an open binary file, or into a path: written whole or not at all."""
    if not isinstance(target, str | os.PathLike):
        for chunk in chunks:
            target.write(chunk)
        return
    path = Path(target)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
