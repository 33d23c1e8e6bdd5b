"""The Swift driver's wire format: the Content-Type that carries digest, metadata and etag, the
etag of a foreign object, and the one translation of store errors onto the taxonomy.

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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import aiohttp
from keystoneauth1 import exceptions as ksa_exc
from multidict import CIMultiDict, CIMultiDictProxy
from openstack import exceptions as sdk_exc

from ..base import (
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RegionError,
    Unavailable,
)

CONTENT_TYPE = "application/x-replicator"
SEGMENT_TYPE = "application/octet-stream"

# What can come out of aiohttp, keystoneauth and openstacksdk while talking to the store.
_STORE_ERRORS = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
    json.JSONDecodeError,
    ksa_exc.ClientException,
    sdk_exc.SDKException,
)


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
        if status == 416:  # only a ranged get sends a Range: it starts past the end
            return RangeNotSatisfiable(f"the range starts past the end ({what})", region=region, name=name)
        if status in (401, 403):
            return PermissionDenied(what, region=region, name=name)
        if status in (408, 409, 429, 498) or status >= 500:
            return Unavailable(what, region=region, name=name)
        return RegionError(what, region=region, name=name)  # 400, 411, 413...: a bug, not retried
    if isinstance(err, (ksa_exc.CatalogException, ksa_exc.AuthPluginException, sdk_exc.ConfigException)):
        # No object-store endpoint, a cloud missing from clouds.yaml: configuration, not retried.
        return RegionError(what, region=region, name=name)
    # Connection refused or reset, timeouts, truncated bodies, Keystone unreachable
    # (DiscoveryFailure wraps that), malformed answers: transient as far as we can tell.
    return Unavailable(what, region=region, name=name)


def _status_error(resp: aiohttp.ClientResponse, message: str) -> aiohttp.ClientResponseError:
    # Our request headers hold the token: keep them out of the exception's request_info.
    info = aiohttp.RequestInfo(resp.url, resp.method, CIMultiDictProxy(CIMultiDict()), resp.url)
    return aiohttp.ClientResponseError(info, (), status=resp.status, message=message, headers=resp.headers)


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
        meta[raw[i + 1 : j].decode("ascii")] = raw[j + 2 : k].decode("utf-8")
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


def decode_content_type(value: str | None) -> tuple[str, dict[str, str], str]:
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
        return binascii.a2b_base64((param + "=" * (-len(param) % 4)).translate(_FROM_URLSAFE), strict_mode=True).decode(
            "utf-8"
        )
    except (ValueError, UnicodeDecodeError):
        return None


def _stamp_of_header(x_timestamp: str) -> str:
    """``t<seconds>.<5 digits>`` from an X-Timestamp (``1700000000.12345``, maybe ``_<offset>``)."""
    secs, _, frac = x_timestamp.partition("_")[0].partition(".")
    return f"t{int(secs)}.{(frac + '00000')[:5]}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _stamp_of_listing(when: datetime) -> str:
    """The same token from a listing's ``last_modified`` (``2024-05-01T12:34:56.123450``, as UTC)."""
    return f"t{(when - _EPOCH) // _SECOND}.{when.microsecond // 10:05d}"


def _etag(write_id: str, headers: Mapping[str, str]) -> str:
    if write_id:
        return write_id
    return _stamp_of_header(headers["X-Timestamp"]) if "X-Timestamp" in headers else ""


def _timestamp(headers: Mapping[str, str]) -> datetime | None:
    if "X-Timestamp" in headers:  # may carry an internal offset: "1700000000.12345_0000000000000001"
        return datetime.fromtimestamp(float(headers["X-Timestamp"].partition("_")[0]), UTC)
    if "Last-Modified" in headers:
        return parsedate_to_datetime(headers["Last-Modified"])
    return None
