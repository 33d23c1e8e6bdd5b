"""The Swift driver's pure parts: its error translation, its Content-Type wire format, its segmenting."""

import base64
import json
import re
from datetime import UTC, datetime

import aiohttp
import pytest
import requests
from aiohttp.client_reqrep import ConnectionKey
from keystoneauth1 import exceptions as ksa
from multidict import CIMultiDict, CIMultiDictProxy
from openstack import exceptions as sdk
from yarl import URL

from regions import (
    Corrupt,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RegionError,
    Unavailable,
)
from regions.base import MAX_META_BYTES
from regions.swift.large import _segments
from regions.swift.wire import (
    _etag,
    _stamp_of_listing,
    _translate,
    _unpack_meta,
    decode_content_type,
    encode_content_type,
)

URL_ = URL("http://127.0.0.1:8080/v1/AUTH_p/c/some%20obj")
INFO = aiohttp.RequestInfo(URL_, "GET", CIMultiDictProxy(CIMultiDict()), URL_)
KEY = ConnectionKey("127.0.0.1", 8080, False, True, None, None, None, "127.0.0.1")


def http(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(INFO, (), status=status, message="reason")


def sdk_response(status: int) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content = status, b""
    return resp


CASES = [
    (http(404), NotFound),
    (http(412), PreconditionFailed),
    (http(401), PermissionDenied),
    (http(403), PermissionDenied),
    (http(408), Unavailable),
    (http(409), Unavailable),  # Swift: lost timestamp race or SLO segment mismatch
    (http(429), Unavailable),
    (http(498), Unavailable),
    (http(500), Unavailable),
    (http(503), Unavailable),
    (http(504), Unavailable),
    (http(507), Unavailable),
    (http(400), RegionError),
    (http(413), RegionError),
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connection refused")), Unavailable),
    (aiohttp.ServerDisconnectedError(), Unavailable),
    (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), Unavailable),
    (aiohttp.ClientPayloadError("Response payload is not completed"), Unavailable),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), Unavailable),
    (TimeoutError(), Unavailable),
    (ConnectionResetError(104, "Connection reset by peer"), Unavailable),
    (json.JSONDecodeError("Expecting value", "<html>", 0), Unavailable),
    (ksa.ConnectFailure("Unable to establish connection to http://127.0.0.1:5000/v3"), Unavailable),
    (ksa.ConnectTimeout("Request to http://127.0.0.1:5000/v3 timed out"), Unavailable),
    (ksa.DiscoveryFailure("Could not find versioned identity endpoints"), Unavailable),
    (ksa.Unauthorized(), PermissionDenied),
    (ksa.Forbidden(), PermissionDenied),
    (ksa.NotFound(), NotFound),
    (ksa.ServiceUnavailable(), Unavailable),
    (ksa.GatewayTimeout(), Unavailable),
    (ksa.RequestTimeout(), Unavailable),
    (ksa.HttpError(http_status=409), Unavailable),
    (ksa.EndpointNotFound("no object-store endpoint in RegionOne"), RegionError),
    (ksa.MissingRequiredOptions([]), RegionError),
    (sdk.ConfigException("Cloud jp was not found."), RegionError),
    (sdk.HttpException("boom", response=sdk_response(503)), Unavailable),
    (sdk.NotFoundException("gone", response=sdk_response(404)), NotFound),
    (sdk.ForbiddenException("no", response=sdk_response(403)), PermissionDenied),
    (sdk.SDKException("something odd"), Unavailable),
]


@pytest.mark.parametrize("err, expected", CASES, ids=[f"{type(e).__name__}-{i}" for i, (e, _) in enumerate(CASES)])
def test_translate(err, expected):
    got = _translate(err, "jp", "some obj")
    assert type(got) is expected
    assert got.region == "jp" and got.name == "some obj"
    assert "'jp'" in str(got) and "'some obj'" in str(got)


def test_translate_keeps_region_errors():
    err = Corrupt("bad", region="jp", name="x")
    assert _translate(err, "other", "y") is err


def test_translate_without_object_names_only_the_region():
    assert str(_translate(http(503), "jp", None)).startswith("region 'jp': ")


# -- the Content-Type wire format ---------------------------------------------------

DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_golden_content_type():
    # A stored object's format: changing it makes existing replicas unreadable.
    value = encode_content_type(DIGEST, {"version": "0001.n1", "class": "visit", "note": "\u6771;="})
    assert value == (
        "application/x-replicator;v=1;d=" + DIGEST + ";m=BWNsYXNzAAV2aXNpdARub3RlAAXmnbE7PQd2ZXJzaW9uAAcwMDAxLm4x"
    )
    packed = base64.urlsafe_b64decode(value.rpartition(";m=")[2] + "==")
    assert packed == b"\x05class\x00\x05visit\x04note\x00\x05\xe6\x9d\xb1;=\x07version\x00\x070001.n1"
    assert decode_content_type(value)[:2] == (DIGEST, {"version": "0001.n1", "class": "visit", "note": "\u6771;="})
    assert encode_content_type(DIGEST, {}) == "application/x-replicator;v=1;d=" + DIGEST


def test_content_type_survives_what_swift_does_to_it():
    meta = {"a": "x", "empty": ""}
    value = encode_content_type(DIGEST, meta)
    # SLO appends swift_bytes; Swift's listing rebuilds params as ";k=v"; clients may add spaces.
    for seen in (value + ";swift_bytes=3145851", value.replace(";", "; "), value):
        assert decode_content_type(seen)[:2] == (DIGEST, meta)


def test_worst_case_metadata_fits_swift_headers():
    # Each byte a control character or a quote: JSON would grow six-fold, this does not.
    meta = {f"k{i}": "\x01" * 100 for i in range(15)}
    meta["k15"] = "\x01" * (MAX_META_BYTES - sum(len(k) + 100 for k in meta) - 3)
    value = encode_content_type(DIGEST, meta)
    assert len(value) < 2900  # Swift's max_header_size is 8192
    # Every parameter value is an RFC 7230 token, as Swift's parse_content_type wants.
    assert re.fullmatch(r"application/x-replicator(;[a-z]+=[A-Za-z0-9_-]+)+", value)
    assert decode_content_type(value)[:2] == (DIGEST, meta)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "application/octet-stream;swift_bytes=5",
        "application/x-replicator;v=2;d=" + DIGEST,  # a future format
        "application/x-replicator;v=1;d=abc",  # short digest
        "application/x-replicator;v=1;d=" + DIGEST + ";m=!!",  # not base64
        "application/x-replicator;v=1;d=" + DIGEST + ";m=BWNsYXNzAAV2aXN",  # truncated
    ],
)
def test_foreign_or_malformed_content_type_has_no_digest(value):
    assert decode_content_type(value)[:2] == ("", {})


def test_unpack_rejects_truncation():
    with pytest.raises(ValueError):
        _unpack_meta("BWNsYXNzAAV2aXN")
    # A key whose 2-byte value length is cut off (the old decoder read it as 0 and accepted it).
    with pytest.raises(ValueError):
        _unpack_meta(base64.urlsafe_b64encode(b"\x02c_").rstrip(b"=").decode())
    with pytest.raises(ValueError):
        _unpack_meta(base64.urlsafe_b64encode(b"\x01k\x00").rstrip(b"=").decode())


# -- etags ---------------------------------------------------------------------------


def test_write_id_is_the_etag_and_old_readers_ignore_it():
    value = encode_content_type(DIGEST, {"a": "1"}, "0123456789abcdef01234567")
    assert value == f"application/x-replicator;v=1;d={DIGEST};w=0123456789abcdef01234567;m=AWEAATE"
    assert decode_content_type(value)[:2] == (DIGEST, {"a": "1"})
    assert decode_content_type(value + ";swift_bytes=9") == (DIGEST, {"a": "1"}, "0123456789abcdef01234567")
    assert _etag("0123456789abcdef01234567", {"X-Timestamp": "1700000000.12345"}) == "0123456789abcdef01234567"


@pytest.mark.parametrize(
    "x_timestamp, listed, token",
    [
        ("1700000000.12345", "2023-11-14T22:13:20.123450", "t1700000000.12345"),
        ("1700000000.00000", "2023-11-14T22:13:20.000000", "t1700000000.00000"),
        ("1700000000.99999_0000000000000001", "2023-11-14T22:13:20.999990", "t1700000000.99999"),
        ("0000000001.00010", "1970-01-01T00:00:01.000100", "t1.00010"),
    ],
)
def test_foreign_objects_etag_is_their_timestamp_alike_in_head_and_listing(x_timestamp, listed, token):
    # HEAD gives X-Timestamp; the container listing gives the same instant as last_modified.
    assert _etag("", {"X-Timestamp": x_timestamp}) == token
    assert _stamp_of_listing(datetime.fromisoformat(listed).replace(tzinfo=UTC)) == token


# -- segmenting -------------------------------------------------------------------


async def collect(body, size):
    return [(b"".join(s), last) async for s, last in _segments(body, size)]


async def agen(*pieces):
    for p in pieces:
        yield p


@pytest.mark.parametrize(
    "make", [lambda d: d, lambda d: agen(*[d[i : i + 3] for i in range(0, len(d), 3)])], ids=["bytes", "iterator"]
)
async def test_segments(make):
    assert await collect(make(b""), 4) == [(b"", True)]
    assert await collect(make(b"abcd"), 4) == [(b"abcd", True)]  # exactly one segment
    assert await collect(make(b"abcde"), 4) == [(b"abcd", False), (b"e", True)]
    assert await collect(make(b"abcdefgh"), 4) == [(b"abcd", False), (b"efgh", True)]
