"""The Swift driver: one container behind Keystone v3, spoken to with aiohttp.

Theory of operation
    Authentication and the service catalog come from openstacksdk/keystoneauth
    and a ``clouds.yaml`` cloud, as a ConoHa user writes it. Those libraries
    are synchronous, so every call into them runs in a worker thread. The data
    path is aiohttp with ``X-Auth-Token`` against the object-store endpoint;
    a 401 renews the token once and repeats the request.

Conditional writes (etags)
    Swift checks no precondition but ``If-None-Match: *`` on PUT: its proxy
    answers 400 to an ETag in If-None-Match, ``If-Match`` only shapes the
    answer of a GET or HEAD, and DELETE knows only ``X-If-Delete-At`` (the
    expirer's check of X-Delete-At). So ``if_none_match`` is Swift's own atomic
    check, and ``if_match`` is done here: one HEAD just before the request
    that makes the change (the PUT, the manifest PUT of a large object once
    its segments are up, or the DELETE), which also finds the segments the
    change frees. A delete makes that HEAD anyway, so there the check costs no
    request; a plain put makes none.

    Residual window: a write that lands after the HEAD answered and before
    our PUT or DELETE takes its timestamp at the proxy (one round trip, plus
    the manifest GET when the current object is a large one) is replaced or
    deleted anyway; Swift keeps the later timestamp. Callers in one process
    close it with a name lock; across processes it stays that narrow.

    The etag is the write id ``w`` (so ``put`` knows it without asking);
    an object written without one has ``t<X-Timestamp>`` instead, the data
    timestamp Swift orders writes by, which HEAD gives as ``X-Timestamp`` and
    the listing as ``last_modified`` (the same instant to the microsecond).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import yarl

from .. import _retry
from .._body import window
from .._proxy import EnvProxies
from .._retry import RetryPolicy
from ..base import (
    MAX_NAME_BYTES,
    Body,
    ByteRange,
    Corrupt,
    Features,
    ObjectInfo,
    RangeNotSatisfiable,
    SegmentSweep,
    Unavailable,
)
from ..portable import PortableRegion
from .auth import KeystoneAuth
from .copy import copy_inside
from .large import Segment, _hash, _length, _request_body, _segments, forget_segments, put_large, segments_of
from .sweep import sweep_segments
from .wire import (
    _STORE_ERRORS,
    _etag,
    _stamp_of_listing,
    _status_error,
    _status_of,
    _timestamp,
    _translate,
    decode_content_type,
    encode_content_type,
    new_write_id,
)

log = logging.getLogger("regions.swift")

T = TypeVar("T")
MiB = 1 << 20
READ_CHUNK = 256 * 1024
SWIFT_LISTING_LIMIT = 10_000  # Swift's default container_listing_limit
SWIFT_MAX_OBJECT = 5 * 1024**3  # max_file_size: one PUT, so one segment
MIN_UPLOAD_RATE = 1 * MiB  # bytes/s: an upload's deadline grows with its size


class SwiftRegion(KeystoneAuth, PortableRegion):
    """A :class:`~regions.base.Region` on one Swift container. Safe for concurrent use from one event loop."""

    def __init__(
        self,
        cloud: str,
        container: str,
        *,
        name: str,
        clouds_yaml: str | os.PathLike[str] | None = None,
        prefix: str = "",
        retry: RetryPolicy | None = None,
        segment_size: int = 16 * MiB,
        page_size: int = SWIFT_LISTING_LIMIT,
        segment_container: str | None = None,
    ):
        """``cloud`` names an entry of ``clouds_yaml`` (default: openstacksdk's usual search, with
        ``OS_CLIENT_CONFIG_FILE``); objects are stored as ``prefix + name`` in ``container``."""
        self.name = name
        self.cloud = cloud
        self.clouds_yaml = os.fspath(clouds_yaml) if clouds_yaml is not None else None
        self.container = container
        self.segment_container = segment_container or f"{container}_segments"
        self.prefix = prefix
        self.retry = retry or RetryPolicy()
        self.segment_size = segment_size
        self.page_size = page_size
        for c in (self.container, self.segment_container):
            if not c or "/" in c or len(c.encode()) > 256:
                raise ValueError(f"bad Swift container name {c!r}")
        if not 0 < segment_size <= SWIFT_MAX_OBJECT:
            raise ValueError(f"segment_size must be 1..{SWIFT_MAX_OBJECT}")
        if not 0 < page_size <= SWIFT_LISTING_LIMIT:
            raise ValueError(f"page_size must be 1..{SWIFT_LISTING_LIMIT}")
        self._init_auth()
        self._http_session: aiohttp.ClientSession | None = None
        self._proxies = EnvProxies.read()  # the endpoint comes from Keystone's catalog, at login
        self._made: set[str] = set()  # containers known to exist
        self._made_lock = asyncio.Lock()
        self._closed = False
        self.features = Features(sweep_segments=self.sweep_segments)

    def __repr__(self) -> str:
        return f"SwiftRegion({self.name!r}, cloud={self.cloud!r}, container={self.container!r}, prefix={self.prefix!r})"

    # -- HTTP -------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._http_session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.retry.timeout, sock_read=self.retry.timeout)
            self._http_session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._http_session

    def _url(self, endpoint: str, container: str, key: str | None, query: str) -> yarl.URL:
        path = f"{endpoint}/{quote(container, safe='')}"
        if key is not None:
            path += "/" + quote(key, safe="/")
        # encoded=True: the path is quoted already, and yarl must not touch "//" or "%2e%2e" in it.
        return yarl.URL(path + (f"?{query}" if query else ""), encoded=True)

    async def _send(
        self,
        method: str,
        container: str,
        key: str | None = None,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        data: bytes | Segment | None = None,
    ) -> aiohttp.ClientResponse:
        """One request; a 401 renews the token and repeats it once. Statuses >= 400 raise.

        The caller reads or releases the response.
        """
        token, endpoint = await self._login()
        for renewed in (False, True):
            body, length = _request_body(data)
            resp = await self._http().request(
                method,
                self._url(endpoint, container, key, query),
                data=body,
                headers={**(headers or {}), **length, "X-Auth-Token": token},
                proxy=self._proxies.for_url(endpoint),
            )
            if resp.status == 401 and not renewed:
                # Swift: an expired or revoked token is a 401 like any other.
                resp.release()
                token, endpoint = await self._login(stale=token)
                continue
            if resp.status >= 400:
                text = (await resp.content.read(200)).decode("utf-8", "replace").strip()
                resp.close()
                # Swift explains 400s in plain text; its other error pages are boilerplate HTML.
                reason = f"{resp.reason}{': ' + text if text and text[0] != '<' else ''}"
                raise _status_error(resp, reason + (" (after re-authenticating)" if renewed else ""))
            return resp
        raise AssertionError("unreachable")

    async def _call(self, fn: Callable[[], Awaitable[T]], name: str | None, *, size: int = 0) -> T:
        """Run ``fn`` under the retry policy, translating store errors inside each attempt."""

        async def attempt() -> T:
            try:
                return await fn()
            except _STORE_ERRORS as e:
                raise _translate(e, self.name, name) from e

        policy = self.retry
        if size:  # a segment of 64 MiB must not share the deadline of a HEAD
            policy = dataclasses.replace(policy, timeout=policy.timeout + size / MIN_UPLOAD_RATE)
        return await _retry.call(policy, attempt, region=self.name, name=name)

    # -- naming and info ------------------------------------------------------------

    def _key(self, name: str) -> str:
        key = self.prefix + name
        if len(key.encode("utf-8")) > MAX_NAME_BYTES:  # Swift's max_object_name_length, prefix included
            raise ValueError(f"object name with prefix is over {MAX_NAME_BYTES} bytes")
        return key

    def _info(self, name: str, headers: Mapping[str, str]) -> ObjectInfo:
        digest, meta, write_id = decode_content_type(headers.get("Content-Type"))
        return ObjectInfo(
            name=name,
            size=int(headers.get("Content-Length", 0)),
            digest=digest,
            meta=meta,
            modified=_timestamp(headers),
            etag=_etag(write_id, headers),
        )

    # -- writing ------------------------------------------------------------------

    async def _ensure(self, container: str) -> None:
        """Create ``container`` before the first write into it (201 created, 202 already there)."""
        if container in self._made:
            return
        async with self._made_lock:  # once, before any write: the proxy caches a missing container
            if container not in self._made:
                (await self._send("PUT", container)).release()
                self._made.add(container)

    async def _upload(
        self, container: str, key: str, data: bytes | Segment, headers: Mapping[str, str], query: str = ""
    ) -> Mapping[str, str]:
        await self._ensure(container)
        try:
            resp = await self._send("PUT", container, key, query=query, headers=headers, data=data)
        except aiohttp.ClientResponseError as e:
            if e.status != 404:
                raise
            # Swift: a PUT into a missing container is a 404. Deleted under us, or the proxy
            # still caches its absence (a container PUT clears that): make it again.
            self._made.discard(container)
            await self._ensure(container)
            resp = await self._send("PUT", container, key, query=query, headers=headers, data=data)
        resp.release()
        return resp.headers

    async def _put_object(
        self, name: str, key: str, data: bytes | Segment, content_type: str, if_none_match: bool, query: str = ""
    ) -> Mapping[str, str]:
        headers = {"Content-Type": content_type}
        if if_none_match:
            headers["If-None-Match"] = "*"  # Swift honours it on PUT, manifests included
        tries = 0

        async def attempt() -> Mapping[str, str]:
            nonlocal tries
            tries += 1
            try:
                return await self._upload(self.container, key, data, headers, query)
            except aiohttp.ClientResponseError as e:
                if e.status == 412 and tries > 1 and await self._holds(key, content_type):
                    return {}  # our earlier attempt created it; only its answer was lost
                raise

        return await self._call(attempt, name, size=_length(data))

    async def _holds(self, key: str, content_type: str) -> bool:
        resp = await self._send("HEAD", self.container, key)
        resp.release()
        return resp.headers.get("Content-Type") == content_type

    async def _put(
        self, name: str, body: Body, meta: dict[str, str], *, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        key = self._key(name)
        write_id = new_write_id()
        sha = hashlib.sha256()
        parts = _segments(body, self.segment_size)
        await self._call(lambda: self._ensure(self.container), name)  # before any HEAD of _replaced
        try:
            first, last = await parts.__anext__()
            await _hash(sha, first)
            if last:
                old = await self._replaced(name, key, if_match)
                content_type = encode_content_type(sha.hexdigest(), meta, write_id)
                headers = await self._put_object(name, key, first, content_type, if_none_match)
                size = _length(first)
            else:
                large = put_large(self, name, key, first, parts, sha, meta, if_none_match, if_match, write_id)
                del first  # the upload lets go of the first segment once sent
                headers, size, old = await large
        finally:
            await parts.aclose()
        await forget_segments(self, old, name)
        return ObjectInfo(
            name=name, size=size, digest=sha.hexdigest(), meta=meta, modified=_timestamp(headers), etag=write_id
        )

    async def _replaced(self, name: str, key: str, if_match: str | None) -> list[str]:
        """Segments of the object a conditional put is about to replace.

        Only ``if_match`` looks: that HEAD is the precondition check (see "Conditional writes"),
        and the caller sends its PUT right after it. A plain put leaves any segments of what it
        replaces to :meth:`sweep_segments` (see "Large objects"); ``if_none_match`` only creates.
        """
        if if_match is None:
            return []
        return await self._call(lambda: segments_of(self, key, name, if_match, must_exist=True), name)

    # -- segments -------------------------------------------------------------------

    async def sweep_segments(
        self,
        *,
        older_than: timedelta | None = None,
        key_prefix: str = "",
    ) -> SegmentSweep:
        """Delete the segments of uploads no object refers to (see :mod:`regions.swift.sweep`)."""
        return await sweep_segments(self, older_than=older_than, key_prefix=key_prefix)

    async def _delete_key(self, container: str, key: str) -> None:
        try:
            resp = await self._send("DELETE", container, key)
            resp.release()
        except aiohttp.ClientResponseError as e:
            if e.status != 404:
                raise

    # -- reading ------------------------------------------------------------------

    async def _copy(self, source: str, target: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        if info.size > SWIFT_MAX_OBJECT:  # a large object is joined into one: over the limit, read it here
            return await super()._copy(source, target, info, meta)
        return await copy_inside(self, source, target, info, meta)

    async def _head(self, name: str) -> ObjectInfo:
        key = self._key(name)

        async def attempt() -> ObjectInfo:
            resp = await self._send("HEAD", self.container, key)
            resp.release()
            return self._info(name, resp.headers)

        return await self._call(attempt, name)

    async def _get(self, name: str, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        key = self._key(name)
        # Swift answers a Range with 206 and only those bytes, on a static large object too (its
        # proxy then fetches only the segments that hold them); 416 if it starts past the end.
        headers = {"Range": f"bytes={byte_range.start}-{byte_range.end}"} if byte_range else None
        try:
            resp = await self._call(lambda: self._send("GET", self.container, key, headers=headers), name)
        except Unavailable as e:
            if e.__cause__ is not None and _status_of(e.__cause__) == 409:
                # Swift SLO: 409 on GET = the first segment is missing or differs from the
                # manifest. It can be a race with an overwrite; still there after retries, it is not.
                raise Corrupt(
                    "large object's segments do not match its manifest", region=self.name, name=name
                ) from e.__cause__
            raise
        if byte_range is None:
            info = self._info(name, resp.headers)
            return info, self._stream(info, resp)
        if resp.status == 206:  # Content-Range: bytes <start>-<end>/<whole size>
            whole = int(resp.headers.get("Content-Range", "").rpartition("/")[2] or -1)
            info = dataclasses.replace(self._info(name, resp.headers), size=whole)
            return info, self._stream(info, resp, byte_range.start)
        # 200: the whole object after all (a proxy or middleware in front of Swift that drops
        # the Range header): hand out only the range, and still never a byte past the end.
        info = self._info(name, resp.headers)
        want = byte_range.within(info.size)
        if want is None:
            resp.close()
            raise RangeNotSatisfiable(f"the range starts past the end ({info.size} bytes)", region=self.name, name=name)
        return info, window(self._stream(info, resp), want.start, want.length)

    async def _stream(self, info: ObjectInfo, resp: aiohttp.ClientResponse, start: int = 0) -> AsyncIterator[bytes]:
        size, done = start, False  # size: where in the object a cut-off body stopped
        try:
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                size += len(chunk)
                yield chunk
            done = True
        except _STORE_ERRORS as e:
            resp.close()
            # Swift cuts an SLO's body short when a segment after the first is missing or
            # differs from the manifest: corrupt, unless a network failure did the cutting.
            if resp.headers.get("X-Static-Large-Object") == "True" and await self._damaged(
                self.prefix + info.name, size, resp.headers
            ):
                raise Corrupt(
                    "a segment of this large object is missing or does not match its manifest",
                    region=self.name,
                    name=info.name,
                ) from e
            raise _translate(e, self.name, info.name) from e
        finally:
            resp.release() if done else resp.close()  # a half-read connection is not reusable

    async def _damaged(self, key: str, offset: int, headers: Mapping[str, str]) -> bool:
        """Is the segment at ``offset`` of the SLO read with ``headers`` missing or changed?

        False when unsure: the object was replaced meanwhile, or Swift cannot be asked.
        """
        try:
            resp = await self._send("GET", self.container, key, query="multipart-manifest=get")
            try:
                if resp.headers.get("Etag") != headers.get("X-Manifest-Etag"):
                    return False  # no longer the manifest we were reading
                manifest = json.loads(await resp.read())
            finally:
                resp.release()
            for seg in manifest:
                if offset < seg["bytes"]:
                    container, _, obj = seg["name"].lstrip("/").partition("/")
                    try:
                        head = await self._send("HEAD", container, obj)
                    except aiohttp.ClientResponseError as e:
                        return e.status == 404
                    head.release()
                    return bool(
                        head.headers.get("Etag", "").strip('"') != seg["hash"]
                        or int(head.headers.get("Content-Length", -1)) != seg["bytes"]
                    )
                offset -= seg["bytes"]
        except (*_STORE_ERRORS, KeyError):
            pass
        return False

    # -- deleting and listing -------------------------------------------------------

    async def _delete(self, name: str, *, if_match: str | None) -> None:
        # Not ?multipart-manifest=delete: it fails (inside a 200) on plain objects, and it
        # deletes the segments before the manifest, so readers would see a broken object.
        key = self._key(name)
        # With if_match, this HEAD is the precondition check, right before the DELETE.
        segments = await self._call(lambda: segments_of(self, key, name, if_match), name)
        await self._call(lambda: self._delete_key(self.container, key), name)
        await forget_segments(self, segments, name)

    async def _page(self, prefix: str, marker: str, container: str | None = None) -> list[dict[str, Any]]:
        query = f"format=json&limit={self.page_size}&prefix={quote(prefix, safe='')}&marker={quote(marker, safe='')}"
        try:
            resp = await self._send("GET", container or self.container, query=query)
        except aiohttp.ClientResponseError as e:
            if e.status == 404:  # the container is made by the first put
                return []
            raise
        try:
            return json.loads(await resp.read()) if resp.status == 200 else []  # 204: empty
        finally:
            resp.release()

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        # Swift keeps listings in SQLite, names as TEXT with the default BINARY collation:
        # byte order of the UTF-8 name, as the contract wants. The next page is requested as
        # soon as this one's last name is known, while this one is turned into entries.
        start, cut = self.prefix + prefix, len(self.prefix)
        ahead: asyncio.Future[list[dict[str, Any]]] | None = asyncio.ensure_future(
            self._call(functools.partial(self._page, start, ""), None)
        )
        try:
            while ahead is not None:
                page = await ahead
                ahead = None
                if len(page) == self.page_size:
                    marker = page[-1]["name"]
                    ahead = asyncio.ensure_future(self._call(functools.partial(self._page, start, marker), None))
                for item in page:
                    digest, meta, write_id = decode_content_type(item.get("content_type"))
                    modified = datetime.fromisoformat(item["last_modified"]).replace(tzinfo=UTC)
                    yield ObjectInfo(
                        name=item["name"][cut:],
                        size=item["bytes"],
                        digest=digest,
                        meta=meta,
                        modified=modified,
                        etag=write_id or _stamp_of_listing(modified),
                    )
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        if self._http_session is not None:
            await self._http_session.close()
            self._http_session = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)
