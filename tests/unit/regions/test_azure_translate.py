"""The Azure driver's pure parts: ``_translate`` on real SDK exceptions, and the listing re-order.

The HTTP errors come from the real SDK talking to a tiny local server that
answers with a chosen status and ``x-ms-error-code``, so each exception is
exactly what azure-storage-blob raises for it (class, status, error code).
"""

import asyncio
import gc
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from aiohttp import web
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from regions import (
    NotFound,
    ObjectInfo,
    PermissionDenied,
    PreconditionFailed,
    RegionError,
    Unavailable,
)
from regions.azure import AzureRegion
from regions.azure.driver import _translate
from regions.azure.listing import _entry, _http_date, _parse, _utf8_order
from tests.support.loopback import serving

KEY = "bm90LWEtcmVhbC1rZXktYnV0LXN0aWxsLWEtc2VjcmV0"  # base64 of a made-up key
NAME = "obj/with space?#%"


async def _answer(request: web.Request) -> web.Response:
    status, _, code = request.match_info["blob"].partition("-")
    headers = {"x-ms-error-code": code} if code else {}
    body = None
    if request.method != "HEAD" and code:
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>made-up {code}\nRequestId:0</Message></Error>"
        )
        headers["Content-Type"] = "application/xml"
    return web.Response(status=int(status), text=body, headers=headers)


@pytest.fixture
async def fake_azure():
    app = web.Application()
    app.router.add_route("*", "/devstoreaccount1/c/{blob}", _answer)
    async with serving(app) as port:
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
        async with BlobServiceClient.from_connection_string(conn, retry_total=0) as svc:
            yield svc.get_container_client("c")


async def sdk_error(container, status: int, code: str, op: str) -> Exception:
    blob = container.get_blob_client(f"{status}-{code}")
    calls = {
        "head": blob.get_blob_properties,
        "put": lambda: blob.upload_blob(b"x", overwrite=True),
        "get": blob.download_blob,
    }
    with pytest.raises(Exception) as e:
        await calls[op]()
    return e.value


@pytest.mark.parametrize(
    "status, code, op, sdk_class, expected",
    [
        (404, "BlobNotFound", "head", ResourceNotFoundError, NotFound),
        (404, "BlobNotFound", "get", ResourceNotFoundError, NotFound),
        (404, "ContainerNotFound", "put", ResourceNotFoundError, RegionError),
        (409, "BlobAlreadyExists", "put", ResourceExistsError, PreconditionFailed),
        (412, "ConditionNotMet", "put", HttpResponseError, PreconditionFailed),
        (412, "ConditionNotMet", "head", HttpResponseError, PreconditionFailed),
        (409, "ContainerBeingDeleted", "put", ResourceExistsError, RegionError),
        (401, "NoAuthenticationInformation", "head", ClientAuthenticationError, PermissionDenied),
        (403, "AuthenticationFailed", "put", ClientAuthenticationError, PermissionDenied),
        (403, "AuthorizationFailure", "get", HttpResponseError, PermissionDenied),
        (408, "", "put", HttpResponseError, Unavailable),
        (429, "", "head", HttpResponseError, Unavailable),
        (500, "InternalError", "get", HttpResponseError, Unavailable),
        (502, "", "head", HttpResponseError, Unavailable),
        (503, "ServerBusy", "put", HttpResponseError, Unavailable),
        (504, "OperationTimedOut", "get", HttpResponseError, Unavailable),
        (400, "InvalidBlockList", "put", HttpResponseError, RegionError),
        (400, "InvalidHeaderValue", "head", HttpResponseError, RegionError),
        (413, "RequestBodyTooLarge", "put", HttpResponseError, RegionError),
    ],
)
async def test_http_errors(fake_azure, status, code, op, sdk_class, expected):
    err = await sdk_error(fake_azure, status, code, op)
    assert isinstance(err, sdk_class) and err.status_code == status
    got = _translate(err, "ca", NAME)
    assert type(got) is expected
    assert got.region == "ca" and got.name == NAME
    assert "'ca'" in str(got) and repr(NAME) in str(got)
    assert KEY not in str(got)


async def test_closed_port_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    async with BlobServiceClient.from_connection_string(conn, retry_total=0) as svc:
        with pytest.raises(ServiceRequestError) as e:
            await svc.get_blob_client("c", "b").get_blob_properties()
    got = _translate(e.value, "ca", NAME)
    assert type(got) is Unavailable and repr(NAME) in str(got) and KEY not in str(got)


@pytest.mark.parametrize(
    "err, expected",
    [
        (ServiceResponseError("Connection reset by peer"), Unavailable),
        (HttpResponseError(IncompleteReadError("body cut short")), Unavailable),  # as the SDK wraps a cut read
        (aiohttp.ClientConnectionError("gone"), Unavailable),
        (TimeoutError(), Unavailable),
        (ConnectionResetError(104, "reset"), Unavailable),
        (ResourceNotFoundError("gone"), NotFound),
        (ResourceExistsError("there"), PreconditionFailed),
        (ClientAuthenticationError("no"), PermissionDenied),
        (ValueError("a bug of ours"), RegionError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
)
def test_errors_without_a_response(err, expected):
    got = _translate(err, "jp", "k")
    assert type(got) is expected and "'jp'" in str(got) and "'k'" in str(got)


def test_region_errors_pass_through():
    err = Unavailable("x", region="ca", name="n")
    assert _translate(err, "ca", "n") is err


def test_sas_signature_never_reaches_a_message():
    err = ServiceRequestError("GET https://a.blob.core.windows.net/c/b?sv=2024&sig=c2VjcmV0%3D failed")
    assert "c2VjcmV0" not in str(_translate(err, "ca", "b"))


def test_secrets_stay_out_of_repr():
    region = AzureRegion(
        "c",
        connection_string=f"AccountName=a;AccountKey={KEY};BlobEndpoint=https://a.example/?sv=1&sig=c2lnbmF0dXJl",
        name="ca",
    )
    assert KEY not in repr(region) and "c2lnbmF0dXJl" not in repr(region)


# -- _utf8_order: Azure lists in UTF-16 code-unit order --------------------------


def utf16_store(names):
    """A fake store listing: names under a prefix, sorted by UTF-16 code units like Azure."""
    calls = []

    async def store(prefix):
        calls.append(prefix)
        for n in sorted((n for n in names if n.startswith(prefix)), key=lambda s: s.encode("utf-16-be")):
            yield ObjectInfo(name=n, size=0, digest="")
            await asyncio.sleep(0)

    return store, calls


async def ordered(names, prefix=""):
    store, calls = utf16_store(names)
    return [i.name async for i in _utf8_order(store, prefix)], calls


# Characters from every range that matters: ASCII, below the surrogates, U+E000-U+FFFF, beyond U+FFFF.
ALPHABET = ["a", "b", "/", "\u00e9", "\ud7ff", "\ue000", "\uffe0", "\U00010000", "\U0001f600", "\U0010ffff"]


@settings(max_examples=300, deadline=None)
@given(
    st.sets(st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=5), max_size=30),
    st.text(alphabet=st.sampled_from(ALPHABET), max_size=1),
)
def test_utf8_order_matches_byte_order(names, prefix):
    got, _ = asyncio.run(ordered(names, prefix))
    assert got == sorted((n for n in names if n.startswith(prefix)), key=lambda s: s.encode())


async def test_utf8_order_suite_names():
    names = ["a", "B", "\u00e9", "\uffe0", "\U0001f600", "a b", "a/b", "a-b", "~"]
    got, calls = await ordered(names)
    assert got == sorted(names, key=lambda s: s.encode())
    assert calls == ["", ""]  # one extra listing, for the one place where the orders differ


async def test_utf8_order_costs_nothing_without_astral_names():
    names = [f"p/{i:04d}" for i in range(100)] + ["\u00e9", "\uffe0"]
    got, calls = await ordered(names)
    assert got == sorted(names, key=lambda s: s.encode()) and calls == [""]


# -- the listing's per-entry parse --------------------------------------------------

PAGE = b"""<?xml version="1.0" encoding="UTF-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c">
<Prefix>t/</Prefix><MaxResults>2</MaxResults><Blobs>
<Blob><Name>t/a &amp; b</Name><Properties><Creation-Time>Mon, 23 Nov 2026 22:51:25 GMT</Creation-Time>
<Last-Modified>Mon, 23 Nov 2026 22:51:25 GMT</Last-Modified><Etag>"0x1C579C78C842310"</Etag>
<Content-Length>42</Content-Length><BlobType>BlockBlob</BlobType></Properties>
<Metadata><k>v%20v</k><empty>%</empty><x_sha256>abc</x_sha256><x_other>1</x_other></Metadata></Blob>
<Blob><Name>t/bare</Name><Properties><Last-Modified>Tue, 01 Dec 2026 01:02:03 GMT</Last-Modified>
<Etag>0x2</Etag><Content-Length>0</Content-Length></Properties></Blob>
</Blobs><NextMarker>t/bare</NextMarker></EnumerationResults>"""


def test_listing_entries_carry_what_head_gives():
    root = _parse(PAGE)
    first, bare = (_entry(b, len("t/")) for b in root.find("Blobs"))
    assert first == ObjectInfo(
        name="a & b",
        size=42,
        digest="abc",
        meta={"k": "v v", "empty": ""},
        modified=datetime(2026, 11, 23, 22, 51, 25, tzinfo=UTC),
        etag="0x1C579C78C842310",
    )
    assert (bare.name, bare.size, bare.digest, dict(bare.meta), bare.etag) == ("bare", 0, "", {}, "0x2")
    assert root.findtext("NextMarker") == "t/bare"
    assert gc.isenabled()


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 23 Nov 2026 22:51:25 GMT",
        "Sun, 01 Jan 2023 00:00:00 GMT",
        "Thu, 29 Feb 2024 23:59:59 GMT",
        "Mon, 23 Nov 2026 22:51:25 +0000",
        "23 Nov 2026 22:51:25 GMT",
    ],
)
def test_http_date_agrees_with_the_email_parser(text):
    assert _http_date(text) == parsedate_to_datetime(text)
