"""A region on OpenStack Swift behind Keystone v3 (ConoHa Object Storage).

Theory of operation
    Authentication and the service catalog come from openstacksdk/keystoneauth
    and a ``clouds.yaml`` cloud, as a ConoHa user writes it. Those libraries
    are synchronous, so every call into them runs in a worker thread. The data
    path is aiohttp with ``X-Auth-Token`` against the object-store endpoint;
    a 401 renews the token once and repeats the request.

Where the contract's fields live
    A Swift listing carries no user metadata, but it carries the Content-Type
    verbatim, parameters included. So the digest and the user metadata travel
    there, and ``head``, ``get`` and ``list`` all read them back from it::

        application/x-replicator;v=1;d=<sha256 hex>;w=<write id>;m=<base64url, no padding>

    ``w`` is 24 random hex digits drawn for each put: the object's etag (see
    below). ``m`` packs the sorted items as ``[key length: 1 byte][key][value length:
    2 bytes, big-endian][value as UTF-8]`` (no escaping, so 2048 bytes of any
    text cost at most 2795 characters); it is left out when there is no
    metadata. An object without these parameters (not written by this driver)
    has digest ``""`` and no metadata, and ``get`` calls it corrupt.

    Swift takes a header of up to 8192 bytes, but its object server keeps the
    Content-Type, the object's path and its own fields in one xattr: on ext4
    that is about 4 KiB, so a 1024-byte name with 2048 bytes of metadata gets a
    507 there (XFS, Swift's recommended filesystem, and tmpfs take 64 KiB).

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

Large objects
    A body up to ``segment_size`` bytes is one PUT. A larger one becomes a
    static large object: its segments go to ``<container>_segments`` under a
    prefix unique to this upload, and the manifest PUT comes last, so no
    reader sees a part. A segment uploads while the next one is read, and
    goes out as the pieces it arrived in (never joined into one buffer).
    Every HTTP request carries bytes held in memory (at most about two
    segments per put), so each one is retried on its own even when the body
    was a one-shot iterator.

    A delete, and a put with ``if_match``, find the segments of the object
    they replace beforehand (the HEAD they make anyway; the old manifest too
    if it is one) and delete them once the DELETE or new object succeeded;
    Swift only accepts a write newer than what it holds, so those segments can
    no longer be referenced. A reader still streaming the replaced object can
    lose its segments mid-stream and gets ``Unavailable``; reading again gives
    the new object.

    A plain put does not look: a HEAD before every PUT doubled the proxy's
    work on small objects, to find segments that almost never exist. The
    segments of a large object it replaces, and those of an upload cut off by
    a crash, stay behind as orphans (space only, never a broken object) until
    :meth:`SwiftRegion.sweep_segments` deletes them; the reconciler runs it.
    Each segment names the object it was made for (``k=`` in its
    Content-Type) and its upload prefix starts with a Unix time, so the sweep
    can tell an old orphan from a live segment or an upload still under way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import aiohttp
import yarl
from keystoneauth1 import exceptions as ksa_exc
from multidict import CIMultiDict, CIMultiDictProxy
from openstack import exceptions as sdk_exc

from . import _retry
from ._body import split, upload_ahead
from ._retry import RetryPolicy
from .base import (
    MAX_NAME_BYTES,
    Body,
    Corrupt,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    PreconditionFailed,
    RegionError,
    Features,
    SegmentSweep,
    Unavailable,
)
from .portable import PortableRegion

log = logging.getLogger(__name__)

MiB = 1 << 20
CONTENT_TYPE = "application/x-replicator"
READ_CHUNK = 256 * 1024
SWIFT_LISTING_LIMIT = 10_000     # Swift's default container_listing_limit
SEND_SLICE = 256 * 1024          # a request body bigger than this is sent in slices (see _slices)
SWIFT_MAX_SEGMENTS = 1000        # SLO's default max_manifest_segments
SWIFT_MAX_OBJECT = 5 * 1024**3   # max_file_size: one PUT, so one segment
MIN_UPLOAD_RATE = 1 * MiB        # bytes/s: an upload's deadline grows with its size
CLEANUP_CONCURRENCY = 8
SEGMENT_TYPE = "application/octet-stream"
SWEEP_AFTER = timedelta(days=1)  # far longer than any upload (5 GiB at MIN_UPLOAD_RATE: 85 minutes)
_TOKEN_MARGIN = 300              # seconds: renew a token this long before it expires

# What can come out of aiohttp, keystoneauth and openstacksdk while talking to the store.
_STORE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, json.JSONDecodeError,
                 ksa_exc.ClientException, sdk_exc.SDKException)


# -- the error taxonomy -----------------------------------------------------------


def _status_of(err: BaseException) -> int | None:
    if isinstance(err, aiohttp.ClientResponseError):
        return err.status
    if isinstance(err, ksa_exc.HttpError):
        return err.http_status
    if isinstance(err, sdk_exc.HttpException):
        return err.status_code
    return None


def _translate(err: BaseException, region: str, name: str | None) -> RegionError:
    """Map an aiohttp, keystoneauth or openstacksdk failure onto the taxonomy (raise it ``from err``).

    409 is ``Unavailable``, not ``PreconditionFailed``: Swift answers 409 when
    a write loses to a newer timestamp and when a large object's segments do
    not match its manifest, both worth a retry (rclone retries it too); the
    only precondition this driver sends, ``If-None-Match: *``, fails with 412.
    """
    if isinstance(err, RegionError):
        return err
    what = f"{type(err).__name__}: {err}"
    status = _status_of(err)
    if status is not None:
        if status == 404:
            return NotFound(f"not found ({what})", region=region, name=name)
        if status == 412:
            return PreconditionFailed(f"object exists ({what})", region=region, name=name)
        if status in (401, 403):
            return PermissionDenied(what, region=region, name=name)
        if status in (408, 409, 429, 498) or status >= 500:
            return Unavailable(what, region=region, name=name)
        return RegionError(what, region=region, name=name)  # 400, 411, 413, 416...: a bug, not retried
    if isinstance(err, (ksa_exc.CatalogException, ksa_exc.AuthPluginException,
                        sdk_exc.ConfigException)):
        # No object-store endpoint, a cloud missing from clouds.yaml: configuration, not retried.
        return RegionError(what, region=region, name=name)
    # Connection refused or reset, timeouts, truncated bodies, Keystone unreachable
    # (DiscoveryFailure wraps that), malformed answers: transient as far as we can tell.
    return Unavailable(what, region=region, name=name)


def _status_error(resp: aiohttp.ClientResponse, message: str) -> aiohttp.ClientResponseError:
    # Our request headers hold the token: keep them out of the exception's request_info.
    info = aiohttp.RequestInfo(resp.url, resp.method, CIMultiDictProxy(CIMultiDict()), resp.url)
    return aiohttp.ClientResponseError(info, (), status=resp.status, message=message,
                                       headers=resp.headers)


# -- the Content-Type that carries digest and metadata ----------------------------------


def _pack_meta(meta: Mapping[str, str]) -> str:
    out = bytearray()
    for key in sorted(meta):
        k, v = key.encode("ascii"), meta[key].encode("utf-8")
        out += bytes([len(k)]) + k + len(v).to_bytes(2, "big") + v
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode("ascii")


_FROM_URLSAFE = str.maketrans("-_", "+/")


def _unpack_meta(text: str) -> dict[str, str]:
    # Once per listed object: binascii and plain indexing, no per-item helper calls.
    raw = binascii.a2b_base64((text + "=" * (-len(text) % 4)).translate(_FROM_URLSAFE), strict_mode=True)
    meta, i, end = {}, 0, len(raw)
    while i < end:
        j = i + 1 + raw[i]
        if j + 2 > end:
            raise ValueError("truncated metadata")
        k = j + 2 + (raw[j] << 8 | raw[j + 1])
        if k > end:
            raise ValueError("truncated metadata")
        meta[raw[i + 1:j].decode("ascii")] = raw[j + 2:k].decode("utf-8")
        i = k
    return meta


def new_write_id() -> str:
    return os.urandom(12).hex()


def encode_content_type(digest: str, meta: Mapping[str, str], write_id: str = "") -> str:
    """The Content-Type this driver stores: ``application/x-replicator;v=1;d=<hex>[;w=<id>][;m=<packed>]``."""
    # No spaces: Swift rebuilds an SLO's listing Content-Type as ";k=v" pairs anyway.
    value = f"{CONTENT_TYPE};v=1;d={digest}"
    if write_id:
        value += f";w={write_id}"
    return value + (f";m={_pack_meta(meta)}" if meta else "")


def _decode(value: str | None) -> tuple[str, dict[str, str], str]:
    """``(digest, meta, write id)`` from a stored Content-Type; ``("", {}, "")`` if not ours or malformed."""
    base, *params = (value or "").split(";")
    if base.strip() != CONTENT_TYPE:
        return "", {}, ""
    fields = {}
    for param in params:  # may also hold swift_bytes= (SLO manifests)
        key, _, val = param.strip().partition("=")
        fields[key] = val
    digest = fields.get("d", "")
    if fields.get("v") != "1" or len(digest) != 64:
        return "", {}, ""
    try:
        return digest, _unpack_meta(fields["m"]) if "m" in fields else {}, fields.get("w", "")
    except (ValueError, UnicodeDecodeError):
        return "", {}, ""


def decode_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``(digest, meta)`` from a stored Content-Type; ``("", {})`` if it is not ours or is malformed."""
    return _decode(value)[:2]


def segment_content_type(key: str) -> str:
    """A segment's Content-Type: it names the object key it was uploaded for (for the sweep)."""
    packed = base64.urlsafe_b64encode(key.encode("utf-8")).rstrip(b"=").decode("ascii")
    return f"{SEGMENT_TYPE};k={packed}"


def key_of_segment(content_type: str | None) -> str | None:
    """The object key a segment was uploaded for; None if it does not say (or not in our format)."""
    base, _, param = (content_type or "").partition(";k=")
    if base != SEGMENT_TYPE or not param:
        return None
    try:
        return binascii.a2b_base64((param + "=" * (-len(param) % 4)).translate(_FROM_URLSAFE),
                                   strict_mode=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


# -- bodies --------------------------------------------------------------------------


async def _segments(body: Body, size: int) -> AsyncIterator[tuple[list, bool]]:
    """``(pieces, is_last)`` pairs, each the pieces (bytes or memoryviews, never copied) of at most
    ``size`` bytes; an empty body is one empty segment.

    A segment is only given out once a byte past it has arrived, so the caller
    knows whether it is the last one: a body of exactly ``size`` bytes stays
    one segment.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        starts = range(0, max(len(view), 1), size)
        for i in starts:
            yield [view[i:i + size]], i == starts[-1]
        return
    pieces: list = []
    have = 0
    async for piece in body:
        pieces.append(piece)
        have += len(piece)
        while have > size:
            segment, pieces = split(pieces, size)
            have -= size
            yield segment, False
            del segment
    yield pieces, True


def _length(data: bytes | list) -> int:
    """The size of a body: one ``bytes``, or a segment's pieces."""
    return len(data) if isinstance(data, bytes) else sum(map(len, data))


def _request_body(data: bytes | list | None) -> tuple[object, dict[str, str]]:
    """What aiohttp is to send, and the headers that go with it.

    Pieces over ``SEND_SLICE`` in all go out as zero-copy slices with an explicit Content-Length:
    aiohttp on Python < 3.12.9 joins headers and a bytes body into one new buffer and asyncio
    then copies what the socket did not take (two copies of a 64 MiB segment on the event loop,
    about a quarter of its time on a 64 MiB PUT), and joining the pieces would be a third.
    """
    if data is None or isinstance(data, bytes):
        data = [] if data is None else [data]
    size = _length(data)
    if size <= SEND_SLICE:
        return (b"".join(data) if data else None), {}
    return _slices(data), {"Content-Length": str(size)}


async def _slices(pieces: list) -> AsyncIterator[memoryview]:
    for piece in pieces:
        view = memoryview(piece)
        for i in range(0, len(view), SEND_SLICE):
            yield view[i:i + SEND_SLICE]


def _update(sha, pieces: list) -> None:
    for piece in pieces:
        sha.update(piece)


async def _hash(sha, pieces: list) -> None:
    if _length(pieces) > MiB:  # hashlib drops the GIL: keep the event loop free on big segments
        await asyncio.to_thread(_update, sha, pieces)
    else:
        _update(sha, pieces)


def _stamp_of_header(x_timestamp: str) -> str:
    """``t<seconds>.<5 digits>`` from an X-Timestamp (``1700000000.12345``, maybe ``_<offset>``)."""
    secs, _, frac = x_timestamp.partition("_")[0].partition(".")
    return f"t{int(secs)}.{(frac + '00000')[:5]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _stamp_of_listing(when: datetime) -> str:
    """The same token from a listing's ``last_modified`` (``2024-05-01T12:34:56.123450``, as UTC)."""
    return f"t{(when - _EPOCH) // _SECOND}.{when.microsecond // 10:05d}"


def _etag(write_id: str, headers) -> str:
    if write_id:
        return write_id
    return _stamp_of_header(headers["X-Timestamp"]) if "X-Timestamp" in headers else ""


def _timestamp(headers) -> datetime | None:
    if "X-Timestamp" in headers:  # may carry an internal offset: "1700000000.12345_0000000000000001"
        return datetime.fromtimestamp(float(headers["X-Timestamp"].partition("_")[0]), UTC)
    if "Last-Modified" in headers:
        return parsedate_to_datetime(headers["Last-Modified"])
    return None


@dataclasses.dataclass
class _Upload:
    key: str
    newest: datetime
    paths: list[str] = dataclasses.field(default_factory=list)
    size: int = 0


class SwiftRegion(PortableRegion):
    """A :class:`~regions.base.Region` on one Swift container. Safe for concurrent use from one event loop."""

    def __init__(self, cloud: str, container: str, *, name: str,
                 clouds_yaml: str | os.PathLike[str] | None = None, prefix: str = "",
                 retry: RetryPolicy | None = None, segment_size: int = 16 * MiB,
                 page_size: int = SWIFT_LISTING_LIMIT, segment_container: str | None = None):
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
        self._conn = None  # openstack.connection.Connection, made in a thread on first use
        self._token: str | None = None
        self._endpoint = ""
        self._expires = 0.0
        self._auth_lock = asyncio.Lock()
        self._http_session: aiohttp.ClientSession | None = None
        self._made: set[str] = set()  # containers known to exist
        self._made_lock = asyncio.Lock()
        self._closed = False
        self.features = Features(sweep_segments=self.sweep_segments)

    def __repr__(self) -> str:
        return (f"SwiftRegion({self.name!r}, cloud={self.cloud!r}, "
                f"container={self.container!r}, prefix={self.prefix!r})")

    # -- authentication ---------------------------------------------------------

    def _authenticate(self, renew: bool) -> tuple[str, str, float]:
        """(token, endpoint, expiry) from Keystone. Blocking: runs in a worker thread."""
        if self._conn is None:
            from openstack import connection
            from openstack.config import loader

            if self.clouds_yaml is not None:
                if not os.path.exists(self.clouds_yaml):
                    raise sdk_exc.ConfigException(f"{self.clouds_yaml} does not exist")
                secure = os.path.join(os.path.dirname(self.clouds_yaml), "secure.yaml")
                config = loader.OpenStackConfig(config_files=[self.clouds_yaml],
                                                secure_files=[secure], load_envvars=False)
            else:
                config = loader.OpenStackConfig()
            # keystoneauth waits forever by default; our retry deadline cannot stop a thread.
            region = config.get_one(cloud=self.cloud, api_timeout=self.retry.timeout)
            self._conn = connection.Connection(config=region)
        session = self._conn.session
        if renew:
            session.invalidate()
        access = session.auth.get_access(session)  # renews by itself when close to expiry
        endpoint = self._conn.object_store.get_endpoint().rstrip("/")
        expires = access.expires.timestamp() if access.expires else time.time() + 3600
        return access.auth_token, endpoint, expires

    async def _login(self, stale: str | None = None) -> tuple[str, str]:
        """The token and endpoint to use; a new token if ``stale`` is still the current one."""
        async with self._auth_lock:  # concurrent 401s on one token renew it once
            expiring = time.time() > self._expires - _TOKEN_MARGIN
            if self._token is None or expiring or stale == self._token:
                self._token, self._endpoint, self._expires = await asyncio.to_thread(
                    self._authenticate, self._token is not None)
            return self._token, self._endpoint

    # -- HTTP -------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._http_session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.retry.timeout,
                                            sock_read=self.retry.timeout)
            self._http_session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._http_session

    def _url(self, endpoint: str, container: str, key: str | None, query: str) -> yarl.URL:
        path = f"{endpoint}/{quote(container, safe='')}"
        if key is not None:
            path += "/" + quote(key, safe="/")
        # encoded=True: the path is quoted already, and yarl must not touch "//" or "%2e%2e" in it.
        return yarl.URL(path + (f"?{query}" if query else ""), encoded=True)

    async def _send(self, method: str, container: str, key: str | None = None, *, query: str = "",
                    headers: Mapping[str, str] | None = None, data: bytes | list | None = None,
                    ) -> aiohttp.ClientResponse:
        """One request; a 401 renews the token and repeats it once. Statuses >= 400 raise.

        The caller reads or releases the response.
        """
        token, endpoint = await self._login()
        for renewed in (False, True):
            body, length = _request_body(data)
            resp = await self._http().request(
                method, self._url(endpoint, container, key, query), data=body,
                headers={**(headers or {}), **length, "X-Auth-Token": token})
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

    async def _call(self, fn, name: str | None, *, size: int = 0):
        """Run ``fn`` under the retry policy, translating store errors inside each attempt."""

        async def attempt():
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

    def _info(self, name: str, headers) -> ObjectInfo:
        digest, meta, write_id = _decode(headers.get("Content-Type"))
        return ObjectInfo(name=name, size=int(headers.get("Content-Length", 0)), digest=digest,
                          meta=meta, modified=_timestamp(headers), etag=_etag(write_id, headers))

    # -- writing ------------------------------------------------------------------

    async def _ensure(self, container: str) -> None:
        """Create ``container`` before the first write into it (201 created, 202 already there)."""
        if container in self._made:
            return
        async with self._made_lock:  # once, before any write: the proxy caches a missing container
            if container not in self._made:
                (await self._send("PUT", container)).release()
                self._made.add(container)

    async def _upload(self, container: str, key: str, data: bytes | list, headers: Mapping[str, str],
                      query: str = ""):
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

    async def _put_object(self, name: str, key: str, data: bytes | list, content_type: str,
                          if_none_match: bool, query: str = ""):
        headers = {"Content-Type": content_type}
        if if_none_match:
            headers["If-None-Match"] = "*"  # Swift honours it on PUT, manifests included
        tries = 0

        async def attempt():
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

    async def _put(self, name: str, body: Body, meta: dict[str, str], *,
                   if_none_match: bool, if_match: str | None) -> ObjectInfo:
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
                large = self._put_large(name, key, first, parts, sha, meta, if_none_match, if_match, write_id)
                first = None  # the upload lets go of the first segment once sent
                headers, size, old = await large
        finally:
            await parts.aclose()
        await self._forget(old, name)
        return ObjectInfo(name=name, size=size, digest=sha.hexdigest(), meta=meta,
                          modified=_timestamp(headers), etag=write_id)

    async def _replaced(self, name: str, key: str, if_match: str | None) -> list[str]:
        """Segments of the object a conditional put is about to replace.

        Only ``if_match`` looks: that HEAD is the precondition check (see "Conditional writes"),
        and the caller sends its PUT right after it. A plain put leaves any segments of what it
        replaces to :meth:`sweep_segments` (see "Large objects"); ``if_none_match`` only creates.
        """
        if if_match is None:
            return []
        return await self._call(lambda: self._segments_of(key, name, if_match, must_exist=True), name)

    async def _put_large(self, name, key, first, parts, sha, meta, if_none_match, if_match, write_id):
        upload = f"{self.prefix}{int(time.time())}-{uuid.uuid4().hex}"
        segment_type = segment_content_type(key)
        started, size, sent = 0, 0, False

        async def every_segment() -> AsyncIterator[list]:
            nonlocal started, size, first
            data, last, first = first, False, None
            while True:
                if started == SWIFT_MAX_SEGMENTS:
                    raise RegionError(f"body exceeds {SWIFT_MAX_SEGMENTS} segments of "
                                      f"{self.segment_size} bytes", region=self.name, name=name)
                started += 1
                size += _length(data)
                yield data
                if last:
                    return
                data = []  # the upload task holds the segment; at most about two in memory
                data, last = await parts.__anext__()
                await _hash(sha, data)

        async def send(i: int, data: list) -> dict:
            seg = f"{upload}/{i:08d}"
            headers = await self._call(lambda: self._upload(self.segment_container, seg, data,
                                                            {"Content-Type": segment_type}),
                                       name, size=_length(data))
            return {"path": f"/{self.segment_container}/{seg}",
                    "etag": headers.get("Etag", "").strip('"') or None, "size_bytes": _length(data)}

        try:
            manifest = await upload_ahead(every_segment(), send)
            old = await self._replaced(name, key, if_match)
            content_type = encode_content_type(sha.hexdigest(), meta, write_id)
            sent = True
            headers = await self._put_object(name, key, json.dumps(manifest).encode(), content_type,
                                             if_none_match, query="multipart-manifest=put")
        except BaseException as e:
            # A timeout, cancellation or 5xx after the manifest went out may hide a stored
            # manifest: then keep the segments. Otherwise nothing refers to them.
            refused = isinstance(e, RegionError) and not isinstance(e, Unavailable)
            if not sent or refused:
                paths = [f"/{self.segment_container}/{upload}/{i:08d}" for i in range(started)]
                await asyncio.shield(self._forget(paths, name))
            raise
        return headers, size, old

    # -- segments -------------------------------------------------------------------

    async def _segments_of(self, key: str, name: str | None = None, if_match: str | None = None, *,
                           must_exist: bool = False) -> list[str]:
        """Paths (``/container/object``) of the segments the current ``key`` is made of, if an SLO.

        With ``if_match``, :class:`PreconditionFailed` unless ``key`` is that write (or, unless
        ``must_exist``, missing).
        """
        try:
            resp = await self._send("HEAD", self.container, key)
        except aiohttp.ClientResponseError as e:
            if e.status == 404:
                if if_match is not None and must_exist:
                    raise PreconditionFailed(f"object is missing (if_match {if_match!r})",
                                             region=self.name, name=name) from e
                return []
            raise
        resp.release()
        if if_match is not None:
            current = _etag(_decode(resp.headers.get("Content-Type"))[2], resp.headers)
            if current != if_match:
                raise PreconditionFailed(f"object is another write (if_match {if_match!r})",
                                         region=self.name, name=name)
        if resp.headers.get("X-Static-Large-Object", "").lower() != "true":
            return []
        resp = await self._send("GET", self.container, key, query="multipart-manifest=get")
        try:
            manifest = json.loads(await resp.read())
        finally:
            resp.release()
        return [seg["name"] for seg in manifest if "name" in seg]

    async def _forget(self, paths: list[str], name: str | None) -> int:
        """Delete segments no manifest refers to any more; return how many are gone. Best effort:
        leftovers are only space, and :meth:`sweep_segments` finds them later."""
        mine = f"/{self.segment_container}/"
        paths = [p for p in paths if p.startswith(mine)]  # never delete beyond our segments container
        sem = asyncio.Semaphore(CLEANUP_CONCURRENCY)

        async def one(path: str) -> bool:
            async with sem:
                try:
                    await self._call(lambda: self._delete_key(self.segment_container,
                                                              path[len(mine):]), name)
                    return True
                except RegionError as e:
                    log.warning("region %s: orphan segment left behind: %s", self.name, e)
                    return False

        return sum(await asyncio.gather(*(one(p) for p in paths)))

    async def sweep_segments(self, *, older_than: timedelta | None = None, key_prefix: str = "",
                             ) -> SegmentSweep:
        """Delete the segments of uploads no object refers to (see "Large objects").

        An upload is looked at once it is ``older_than`` (by the Unix time in its name and its
        segments' dates), so a put still uploading is never touched; ``key_prefix`` limits the
        sweep to uploads made for keys under it (the erasure of one customer passes
        ``older_than=0``: nothing may be written there any more). An upload is deleted only if the
        object it was made for is not a large object listing it: the object itself (HEAD, then its
        manifest) decides, not the container listing, which can lag behind writes. Segments that
        do not name their object (an older driver, another tool) are counted and left alone.
        """
        cutoff = datetime.now(UTC) - (SWEEP_AFTER if older_than is None else older_than)
        wanted = self.prefix + key_prefix
        uploads: dict[str, _Upload] = {}
        found = SegmentSweep()
        marker = ""
        while True:
            page = await self._call(lambda m=marker: self._page(self.prefix, m, self.segment_container), None)
            for item in page:
                upload, _, index = item["name"].rpartition("/")
                stamp = upload[len(self.prefix):].partition("-")[0]
                if not (index.isdigit() and stamp.isdigit()):
                    continue  # not an upload of ours
                key = key_of_segment(item.get("content_type"))
                if key is None:
                    found.unattributed += 1
                    continue
                if not key.startswith(wanted):
                    continue
                entry = uploads.setdefault(upload, _Upload(key, datetime.fromtimestamp(int(stamp), UTC)))
                entry.paths.append(f"/{self.segment_container}/{item['name']}")
                entry.size += item["bytes"]
                entry.newest = max(entry.newest,
                                   datetime.fromisoformat(item["last_modified"]).replace(tzinfo=UTC))
            if len(page) < self.page_size:
                break
            marker = page[-1]["name"]
        live: dict[str, asyncio.Future] = {}  # key -> the segment paths its current object uses
        sem = asyncio.Semaphore(CLEANUP_CONCURRENCY)

        async def sweep(upload: str, entry: _Upload) -> None:
            if entry.newest > cutoff:
                found.young += 1
                return
            async with sem:
                if entry.key not in live:
                    live[entry.key] = asyncio.ensure_future(
                        self._call(lambda: self._segments_of(entry.key, entry.key), entry.key))
                try:
                    in_use = await live[entry.key]
                except RegionError as e:
                    log.warning("region %s: segment sweep could not look at %r: %s", self.name, entry.key, e)
                    found.failed += 1
                    return
            if any(p.startswith(f"/{self.segment_container}/{upload}/") for p in in_use):
                found.kept += 1
                return
            deleted = await self._forget(entry.paths, entry.key)
            found.uploads += 1
            found.segments += deleted
            found.bytes += entry.size if deleted == len(entry.paths) else 0
            log.info("region %s: swept %d orphan segments of an upload for %r", self.name, deleted, entry.key)

        try:
            async with asyncio.TaskGroup() as group:
                for upload, entry in uploads.items():
                    group.create_task(sweep(upload, entry))
        finally:
            for f in live.values():
                f.cancel()
        return found

    async def _delete_key(self, container: str, key: str) -> None:
        try:
            resp = await self._send("DELETE", container, key)
            resp.release()
        except aiohttp.ClientResponseError as e:
            if e.status != 404:
                raise

    # -- reading ------------------------------------------------------------------

    async def _head(self, name: str) -> ObjectInfo:
        key = self._key(name)

        async def attempt():
            resp = await self._send("HEAD", self.container, key)
            resp.release()
            return self._info(name, resp.headers)

        return await self._call(attempt, name)

    async def _get(self, name: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        key = self._key(name)
        try:
            resp = await self._call(lambda: self._send("GET", self.container, key), name)
        except Unavailable as e:
            if _status_of(e.__cause__) == 409:
                # Swift SLO: 409 on GET = the first segment is missing or differs from the
                # manifest. It can be a race with an overwrite; still there after retries, it is not.
                raise Corrupt("large object's segments do not match its manifest",
                              region=self.name, name=name) from e.__cause__
            raise
        info = self._info(name, resp.headers)
        return info, self._stream(info, resp)

    async def _stream(self, info: ObjectInfo, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        size, done = 0, False  # size: where a cut-off body stopped
        try:
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                size += len(chunk)
                yield chunk
            done = True
        except _STORE_ERRORS as e:
            resp.close()
            # Swift cuts an SLO's body short when a segment after the first is missing or
            # differs from the manifest: corrupt, unless a network failure did the cutting.
            if (resp.headers.get("X-Static-Large-Object") == "True"
                    and await self._damaged(self.prefix + info.name, size, resp.headers)):
                raise Corrupt("a segment of this large object is missing or does not match "
                              "its manifest", region=self.name, name=info.name) from e
            raise _translate(e, self.name, info.name) from e
        finally:
            resp.release() if done else resp.close()  # a half-read connection is not reusable

    async def _damaged(self, key: str, offset: int, headers) -> bool:
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
                    return (head.headers.get("Etag", "").strip('"') != seg["hash"]
                            or int(head.headers.get("Content-Length", -1)) != seg["bytes"])
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
        segments = await self._call(lambda: self._segments_of(key, name, if_match), name)
        await self._call(lambda: self._delete_key(self.container, key), name)
        await self._forget(segments, name)

    async def _page(self, prefix: str, marker: str, container: str | None = None) -> list[dict]:
        query = (f"format=json&limit={self.page_size}&prefix={quote(prefix, safe='')}"
                 f"&marker={quote(marker, safe='')}")
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
        ahead = asyncio.ensure_future(self._call(lambda: self._page(start, ""), None))
        try:
            while ahead is not None:
                page = await ahead
                ahead = None
                if len(page) == self.page_size:
                    marker = page[-1]["name"]
                    ahead = asyncio.ensure_future(self._call(lambda m=marker: self._page(start, m), None))
                for item in page:
                    digest, meta, write_id = _decode(item.get("content_type"))
                    modified = datetime.fromisoformat(item["last_modified"]).replace(tzinfo=UTC)
                    yield ObjectInfo(name=item["name"][cut:], size=item["bytes"], digest=digest,
                                     meta=meta, modified=modified,
                                     etag=write_id or _stamp_of_listing(modified))
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
