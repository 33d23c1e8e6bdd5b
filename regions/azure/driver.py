"""A region on an Azure Blob Storage container (azure-storage-blob aio), tested against Azurite.

One object is one block blob named ``<prefix><name>``. Its user metadata is
stored as blob metadata, each value percent-encoded (Azure wants ASCII header
values without leading or trailing blanks); the SHA-256 of the body rides
along under the reserved key ``x_sha256``.

Writes. A body that fits one block goes up in a single Put Blob. A larger
body, or an iterator, is cut into blocks staged with Put Block and made
visible by one Put Block List, so no reader ever sees part of it; a put that
fails half-way leaves only uncommitted blocks, which Azure never shows and
drops after a week. Staging a block we hold in memory is retried even when
the body as a whole is a one-shot iterator (only the current block is
resent; the iterator is never rewound).

Reads. The first block comes with the properties by one Get Blob
(:func:`._fast.first_block`; a blob that fits one block is then whole); later
ranges are pinned to that response's ETag with If-Match by the SDK, so a
read never mixes two versions: a put that lands mid-read makes the rest of
the stream fail (:class:`Unavailable`; read again). A ranged get is
``download_blob(offset=, length=)``: only that range crosses the wire
(``x-ms-range``, block by block), and the whole size comes from its
``Content-Range``.

Conditions. ``if_none_match`` is ``If-None-Match: *`` and ``if_match`` is
``If-Match: "<ETag>"`` on the request that makes the object visible (the Put
Blob, or the Put Block List after the blocks are staged), and on Delete Blob:
Azure checks them atomically with the write. The etag is Azure's ETag without
its quotes (the listing's XML has none, the headers have them). A retried
conditional put that fails its condition because its own first attempt landed
(the answer was lost) looks at the blob, and succeeds if it holds exactly its
digest and metadata.

Retries. The SDK's own retry policy is off (``retry_total=0``): only
:func:`regions._retry.call` retries, with one deadline per attempt.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit
from xml.etree import ElementTree

import aiohttp
from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobServiceClient

from .._body import READ_AHEAD, Hashing, chunks, send_slices, upload_ahead
from .._proxy import EnvProxies
from .._retry import RetryPolicy, call
from ..base import (
    Body,
    ByteRange,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RegionError,
    Unavailable,
)
from ..portable import PortableRegion
from ._fast import blob_url, first_block, head_headers, xml_page
from .copy import copy_inside
from .credential import CheckedCredential
from .listing import DIGEST_KEY, _encode_value, _entry, _etag, _parse, _utf8_order, info_of_headers, info_of_properties

MiB = 1 << 20
log = logging.getLogger("regions.azure")
T = TypeVar("T")

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_CREATE_CONFLICT = {"BlobAlreadyExists", "ConditionNotMet", ""}
# XML 1.0 cannot carry these: Azurite answers List Blobs with 500 for the whole
# container once one stored name holds one.
_SAS_SIG = re.compile(r"(sig=)[^&\s]+", re.IGNORECASE)


def _error_code(err: BaseException) -> str:
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _translate(err: BaseException, region: str, name: str | None) -> RegionError:
    """Map an azure-core / azure-storage-blob failure onto the taxonomy."""
    if isinstance(err, RegionError):
        return err
    status = getattr(err, "status_code", None) if isinstance(err, HttpResponseError) else None
    code = _error_code(err)
    # First line only (the rest is request ids and XML); a SAS signature never gets through.
    text = _SAS_SIG.sub(r"\1REDACTED", (str(getattr(err, "message", "") or err).splitlines() or [""])[0])
    what = f"{status or type(err).__name__}{' ' + code if code else ''}: {text}"
    if status == 404 or (status is None and isinstance(err, ResourceNotFoundError)):
        if code == "ContainerNotFound":
            return RegionError(f"the container does not exist ({what})", region=region, name=name)
        return NotFound("no such object", region=region, name=name)
    if (
        status == 412
        or (status == 409 and code in _CREATE_CONFLICT)
        or (status is None and isinstance(err, (ResourceExistsError, ResourceModifiedError)))
    ):
        return PreconditionFailed(f"object exists or changed ({what})", region=region, name=name)
    if status == 416:  # only a ranged get asks for a range: it starts past the end
        return RangeNotSatisfiable(f"the range starts past the end ({what})", region=region, name=name)
    if status in (401, 403) or (status is None and isinstance(err, ClientAuthenticationError)):
        return PermissionDenied(what, region=region, name=name)
    if status in _RETRY_STATUS:
        return Unavailable(what, region=region, name=name)
    if status is not None:  # 400 and friends: our request or our configuration is wrong
        return RegionError(what, region=region, name=name)
    if isinstance(err, (AzureError, aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        # No answer (ServiceRequestError, ServiceResponseError, a socket error), or one cut
        # short (the SDK wraps a truncated body in an HttpResponseError without a status).
        return Unavailable(what, region=region, name=name)
    return RegionError(what, region=region, name=name)


def _conditions(if_none_match: bool, if_match: str | None) -> dict[str, Any]:
    """The SDK's keywords for a precondition on the request that commits or deletes."""
    if if_none_match:
        return {"match_condition": MatchConditions.IfMissing}
    if if_match is not None:
        return {"etag": f'"{if_match}"', "match_condition": MatchConditions.IfNotModified}
    return {}


class AzureRegion(PortableRegion):
    """A :class:`~regions.base.Region` on one container, optionally under a key prefix.

    Give either ``connection_string`` or ``account_url`` and ``credential``
    (an account key with a ``*.blob.core.windows.net`` URL, an
    ``AzureNamedKeyCredential``, or an Entra ID token credential: see
    :mod:`.credential`; the region closes a token credential it was given).
    ``ca_file`` trusts a private CA instead of the system's. Nothing secret is
    kept on the object or put in messages. No I/O happens until the first call.
    """

    def __init__(
        self,
        container: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        prefix: str = "",
        name: str,
        retry: RetryPolicy | None = None,
        block_size: int = 4 * MiB,
        page_size: int = 5000,
        api_version: str | None = None,
        ca_file: str | None = None,
    ):
        if (connection_string is None) == (account_url is None):
            raise ValueError("give either connection_string or account_url (with credential)")
        if not 0 < block_size <= 4000 * MiB:
            raise ValueError("block_size must be between 1 byte and 4000 MiB")
        self.name = name
        self.container = container
        self.prefix = prefix
        self.retry = retry or RetryPolicy()
        self.block_size = block_size
        self.page_size = page_size
        options: dict[str, Any] = {
            "retry_total": 0,  # one retry layer: ours
            # One block per request both ways, so memory stays at about one block per call.
            "max_single_put_size": block_size,
            "max_block_size": block_size,
            "max_single_get_size": block_size,
            "max_chunk_get_size": block_size,
        }
        if api_version:
            # Azurite 3.35 rejects the SDK's default x-ms-version (400 InvalidHeaderValue)
            # unless started with --skipApiVersionCheck; "2025-11-05" is the newest it knows.
            options["api_version"] = api_version
        if ca_file:  # a private CA (an emulator over HTTPS, a TLS-inspecting proxy): trust it, and only it
            options["connection_verify"] = ca_file
        # The environment's proxy is read once, here. With the SDK's default (use_env_settings,
        # aiohttp's trust_env), every request looked up the proxy and ~/.netrc in worker threads:
        # about half the CPU of a small Get Blob.
        options["use_env_settings"] = False
        self._token_credential: CheckedCredential | None = None
        if isinstance(credential, AsyncTokenCredential):  # Entra ID: a token that expired is refused here
            credential = self._token_credential = CheckedCredential(
                credential, kind=getattr(credential, "kind", type(credential).__name__), region=name
            )

        def client(**more: Any) -> BlobServiceClient:
            if connection_string is not None:
                return BlobServiceClient.from_connection_string(connection_string, **options, **more)
            return BlobServiceClient(account_url or "", credential=credential, **options, **more)

        self._service = client()  # no I/O until the first call
        if proxy := EnvProxies.read().for_url(self._service.url):
            self._service = client(proxies={urlsplit(self._service.url).scheme: proxy})
        self._container = self._service.get_container_client(container)
        self._copies_inside = True  # Copy Blob, until the store refuses one (see _copy)

    def __repr__(self) -> str:
        endpoint = urlsplit(self._service.url)._replace(query="").geturl()  # a SAS stays out
        return f"AzureRegion({self.name!r}, {endpoint!r}, container={self.container!r}, prefix={self.prefix!r})"

    # -- plumbing -----------------------------------------------------------

    def _key(self, name: str) -> str:
        """The blob name of ``name``."""
        # The portable layer refuses what Azure cannot hold verbatim: '\\' (Azure and
        # Azurite store it as '/'), dot segments (yarl collapses them after the
        # SDK signed the path) and control characters (they break XML listings).
        return self.prefix + name

    async def _call(self, fn: Callable[[], Awaitable[T]], name: str | None, *, repeatable: bool = True) -> T:
        async def attempt() -> T:
            try:
                return await fn()
            except RegionError:
                raise
            except Exception as e:
                raise _translate(e, self.name, name) from e

        return await call(self.retry, attempt, repeatable=repeatable, region=self.name, name=name)

    def _info(self, name: str, props: Any) -> ObjectInfo:
        return info_of_properties(name, props)

    # -- writing ------------------------------------------------------------

    async def _put(
        self, name: str, body: Body, meta: dict[str, str], *, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        key = self._key(name)
        user = meta
        stored = {k: _encode_value(v) for k, v in user.items()}
        blob = self._container.get_blob_client(key)
        # On the commit, for staged blocks. Azurite answers a failed If-None-Match with
        # 409 BlobAlreadyExists, Azure with 409 or 412 ConditionNotMet: _translate maps all three.
        cond = _conditions(if_none_match, if_match)
        source = Hashing(chunks(body, self.block_size))
        blocks = aiter(source)
        first = await anext(blocks, b"")
        second = await anext(blocks, None)

        def info(answer: dict[str, Any]) -> ObjectInfo:
            return ObjectInfo(
                name=name,
                size=source.size,
                digest=source.digest,
                meta=user,
                modified=answer.get("last_modified"),
                etag=_etag(answer.get("etag")),
            )

        if second is None:  # one block: a single Put Blob
            stored[DIGEST_KEY] = source.digest
            return info(
                await self._commit(
                    name,
                    lambda: blob.upload_blob(first, length=len(first), overwrite=True, metadata=stored, **cond),
                    cond,
                    stored,
                )
            )

        tag = uuid.uuid4().hex  # block ids are per blob: concurrent puts must not share them

        async def stage(i: int, data: bytes) -> tuple[str, dict[str, Any]]:
            bid = base64.b64encode(f"{tag}-{i:06d}".encode()).decode()
            # A fresh iterator of slices for each attempt (see send_slices); the SDK's hints leave out
            # the async iterables its aio client sends (azure.core's set_content_body).
            return bid, await self._call(
                lambda: blob.stage_block(bid, cast(Any, send_slices([data])), length=len(data)), name
            )

        async def every_block() -> AsyncIterator[bytes]:
            nonlocal first, second
            yield first
            if second is not None:  # always, on this path
                yield second
            first = second = b""
            async for block in blocks:
                yield block

        staged = await upload_ahead(every_block(), stage, budget=READ_AHEAD)
        ids = [BlobBlock(block_id=bid) for bid, _ in staged]
        staged_at = staged[0][1]["date"]
        stored[DIGEST_KEY] = source.digest
        try:
            return info(
                await self._commit(name, lambda: blob.commit_block_list(ids, metadata=stored, **cond), cond, stored)
            )
        except RegionError as e:
            if e.__cause__ is None or _error_code(e.__cause__) != "InvalidBlockList":
                raise
            # Any Put Block List to a blob drops all its uncommitted blocks, ours
            # included (on Azure a Put Blob does too; on Azurite it does not): a
            # concurrent put committed while we were staging. Order ours just before
            # that one: a plain put is then overwritten (done), a create-only put
            # finds the object there. Server clocks on both sides; 1 s resolution.
            try:
                now = await self._head(name)
            except NotFound:
                raise e from e.__cause__
            if now.modified is None or now.modified < staged_at - timedelta(seconds=1):
                raise
            if cond:  # what we were to create or replace is not what is there now
                raise PreconditionFailed("object written by a concurrent put", region=self.name, name=name) from e
        return info({})

    async def _commit(
        self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]], cond: dict[str, Any], stored: dict[str, str]
    ) -> dict[str, Any]:
        """Run the request that makes a put visible; the SDK's answer (``etag``, ``last_modified``)."""
        tries = 0

        async def attempt() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            return await fn()

        try:
            return await self._call(attempt, name)
        except (PreconditionFailed, NotFound) as e:
            # If-Match on a missing blob: Azure answers 412, Azurite 404. Either way, refused.
            if tries > 1 and cond:
                # A retry: our first attempt may have landed and only its answer was lost.
                blob = self._container.get_blob_client(self._key(name))
                try:
                    props = await self._call(blob.get_blob_properties, name)
                except NotFound:
                    props = None
                if props is not None and dict(props.metadata or {}) == stored:
                    return {"etag": props.etag, "last_modified": props.last_modified}
            if isinstance(e, NotFound) and cond:
                raise PreconditionFailed("object is missing (if_match)", region=self.name, name=name) from e
            raise

    async def _copy(self, source: str, target: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        if self._copies_inside:
            stored = {k: _encode_value(v) for k, v in meta.items()} | {DIGEST_KEY: info.digest}
            try:
                tag, modified = await copy_inside(
                    self._container,
                    self._key(source),
                    self._key(target),
                    info.etag,
                    stored,
                    lambda request: self._call(request, target),
                    region=self.name,
                )
                return ObjectInfo(target, info.size, info.digest, meta, modified, _etag(tag))
            except PermissionDenied as e:  # the store would not read its source (an endpoint it does not
                # know as its own, such as a reverse proxy) or a policy forbids it: copy through here
                log.warning(
                    "Copy Blob refused; copies go through this process", extra={"region": self.name, "error": str(e)}
                )
                self._copies_inside = False
        return await super()._copy(source, target, info, meta)

    # -- reading ------------------------------------------------------------

    async def _head(self, name: str) -> ObjectInfo:
        url = blob_url(self._container, self._key(name))
        return info_of_headers(name, await self._call(lambda: head_headers(self._container, url), name))

    async def _get(self, name: str, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        key = self._key(name)
        if byte_range is None:  # the first block without the SDK's downloader (_fast), the rest pinned
            url = blob_url(self._container, key)
            headers, first, size = await self._call(lambda: first_block(self._container, url, self.block_size), name)
            info = dataclasses.replace(info_of_headers(name, headers), size=size)
            return info, self._stream(info, self._rest(key, first, info))
        blob = self._container.get_blob_client(key)
        # x-ms-range: Azure clips a range past the end, and answers 416 to one starting there.
        download = await self._call(lambda: blob.download_blob(offset=byte_range.start, length=byte_range.length), name)
        # The SDK's properties.size is the range's; "bytes a-b/<whole size>" has the object's.
        whole = int(str(download.properties.content_range).rpartition("/")[2])
        info = dataclasses.replace(self._info(name, download.properties), size=whole)
        return info, self._stream(info, download.chunks())

    async def _rest(self, key: str, first: bytes, info: ObjectInfo) -> AsyncIterator[bytes]:
        """``first``, then the rest of the blob as of ``info``'s ETag (a put that landed since makes
        it fail: :meth:`_stream` says so)."""
        if first:
            yield first
        if len(first) < info.size:
            rest = await self._container.get_blob_client(key).download_blob(
                offset=len(first),
                length=info.size - len(first),
                etag=f'"{info.etag}"',
                match_condition=MatchConditions.IfNotModified,
            )
            async for chunk in rest.chunks():
                yield chunk

    async def _stream(self, info: ObjectInfo, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(pieces, None), self.retry.timeout)
            except TimeoutError as e:
                raise Unavailable(f"no data within {self.retry.timeout:g}s", region=self.name, name=info.name) from e
            except Exception as e:
                err = _translate(e, self.name, info.name)
                if isinstance(err, (NotFound, PreconditionFailed)):
                    # The SDK pins ranges after the first to its ETag (If-Match): 412 or 404
                    # here means a put or delete landed mid-read.
                    err = Unavailable(
                        "object changed while being read; read it again", region=self.name, name=info.name
                    )
                raise err from e
            if chunk is None:
                return
            yield chunk

    # -- deleting and listing -------------------------------------------------

    async def _delete(self, name: str, *, if_match: str | None) -> None:
        blob = self._container.get_blob_client(self._key(name))
        cond = _conditions(False, if_match)
        try:
            await self._call(lambda: blob.delete_blob(delete_snapshots="include", **cond), name)
        except NotFound:
            pass
        except PreconditionFailed:
            # Azurite answers If-Match on a missing blob with 412, not 404: missing still succeeds.
            try:
                await self._head(name)
            except NotFound:
                return
            raise

    async def _page(self, prefix: str, marker: str) -> bytes:
        """One List Blobs page, as the XML the store sent (see :mod:`regions.azure._fast`)."""
        return await xml_page(self._container, self.prefix + prefix, marker, self.page_size)

    async def _store_order(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Objects under ``prefix`` as the store lists them: pages, UTF-16 code-unit order.

        Pages come as XML from :func:`regions.azure._fast.xml_page` and are parsed
        by :mod:`regions.azure.listing`. Most of a listing's time is the store's
        own, so the next page is requested as soon as this one's marker is
        known, while this one is parsed and consumed: one page read ahead (as
        bytes), never more. A page's tree lives only while it is turned into
        entries.
        """
        skip = len(self.prefix)
        ahead: asyncio.Future[bytes] | None = asyncio.ensure_future(
            self._call(functools.partial(self._page, prefix, ""), None)
        )
        try:
            while ahead is not None:
                try:
                    root = _parse(await ahead)
                except ElementTree.ParseError as e:
                    raise RegionError(f"malformed listing: {e}", region=self.name) from e
                marker = root.findtext("NextMarker")
                ahead = (
                    asyncio.ensure_future(self._call(functools.partial(self._page, prefix, marker), None))
                    if marker
                    else None
                )
                blobs = root.find("Blobs")
                entries = [_entry(blob, skip) for blob in (blobs if blobs is not None else ())]
                del root, blobs
                for info in entries:
                    yield info
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return _utf8_order(self._store_order, prefix)

    async def close(self) -> None:
        await self._service.close()
        if self._token_credential is not None:  # the region was handed it to keep: it closes it
            await self._token_credential.close()
