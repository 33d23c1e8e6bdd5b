"""The requests the client builds and when it tries them again (no I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from replicator.client import AsyncClient, ByteRange, RetryPolicy
from replicator.client import _calls as calls
from replicator.client._bodies import Upload
from replicator.client.errors import (
    BadRequest,
    InternalError,
    PreconditionFailed,
    ReplicatorError,
    TransportError,
    Unavailable,
    UnexpectedResponse,
)
from replicator.client.retry import (
    AIOHTTP_TRANSPORT_ERRORS,
    NotSent,
    aiohttp_transport_error,
    httpx_transport_error,
    tried,
    worth_retrying,
)


def test_object_paths_are_percent_encoded_and_keep_slashes():
    assert calls.object_path("alice", "account", "a/b c%.txt") == "/v1/objects/alice/account/a/b%20c%25.txt"
    assert calls.object_path("a b", "account", "é?#") == "/v1/objects/a%20b/account/%C3%A9%3F%23"
    for customer, data_class, name in (("", "account", "x"), ("c", "", "x"), ("c", "account", "")):
        with pytest.raises(ValueError):
            calls.object_path(customer, data_class, name)


def test_entity_tags():
    assert calls.entity_tags("0001.00000.n1") == '"0001.00000.n1"'
    assert calls.entity_tags('"0001.00000.n1"') == '"0001.00000.n1"'  # an ETag as the service sent it
    assert calls.entity_tags(["a", "b"]) == '"a", "b"'
    assert calls.entity_tags("*") == "*"
    for bad in ("", '"', 'a"b', "a b", ["*", "a"], []):
        with pytest.raises(ValueError):
            calls.entity_tags(bad)


def test_byte_ranges():
    assert ByteRange(0, 0).header() == "bytes=0-0"
    assert ByteRange(5).header() == "bytes=5-"
    assert ByteRange.last(4).header() == "bytes=-4"
    for start, end in ((-1, None), (5, 4), (None, 0), (None, None)):
        with pytest.raises(ValueError):
            ByteRange(start, end)


def test_a_read_needs_a_purpose_and_sends_its_conditions():
    call = calls.read(
        "c", "account", "x", purpose="service", version="v1", byte_range=ByteRange(1, 2), if_none_match="v0"
    )
    assert call.headers == {"X-Purpose": "service", "Range": "bytes=1-2", "If-None-Match": '"v0"'}
    assert call.params == {"version": "v1"} and call.idempotent
    with pytest.raises(ValueError):
        calls.read("c", "account", "x", purpose="")
    assert calls.versions("c", "account", "x", purpose="service").params == {"versions": ""}


def test_which_calls_may_be_tried_again():
    assert not calls.restore("c", "account", "x", "v").idempotent
    assert calls.delete("c", "account", "x", if_match=None).idempotent and calls.erase("c").idempotent
    put = dict(content_type=None, content_length=None, if_none_match=False, if_match=None)
    assert calls.put("c", "account", "x", replayable=True, **put).idempotent
    assert not calls.put("c", "account", "x", replayable=False, **put).idempotent
    assert calls.list_page("c", None, cursor=None, limit=None).params == {}


def test_upload_bodies():
    assert Upload(b"abc").replayable and Upload(b"abc").length == 3
    f = io.BytesIO(b"0123456789")
    f.seek(4)
    up = Upload(f)
    assert up.replayable and up.length == 6
    assert b"".join(up.content()) == b"456789" and b"".join(up.content()) == b"456789"  # rewound for a retry
    it = Upload(iter([b"a", b"b"]))
    assert not it.replayable and it.length is None and not it.started
    assert b"".join(it.content()) == b"ab" and it.started
    with pytest.raises(TypeError):
        Upload("text is not bytes")  # type: ignore[arg-type]


def test_retry_decisions():
    request = httpx.Request("GET", "http://127.0.0.1/")
    for error, idempotent, expected in [
        (Unavailable("busy", status=503), True, True),
        (Unavailable("busy", status=503), False, False),
        (InternalError("bug", status=500), True, True),
        (UnexpectedResponse("gateway", status=502), True, True),
        (UnexpectedResponse("odd", status=200), True, False),
        (BadRequest("no", status=400), True, False),
        (PreconditionFailed("no", status=412), True, False),
        (TransportError("reset"), True, True),
        (TransportError("reset"), False, False),
        (httpx_transport_error(httpx.ConnectError("refused", request=request), "GET"), False, True),  # nothing sent
    ]:
        assert worth_retrying(error, idempotent) is expected, (error, idempotent)
    assert isinstance(httpx_transport_error(httpx.ConnectTimeout("t", request=request), "x"), NotSent)
    assert not isinstance(httpx_transport_error(httpx.ReadTimeout("t", request=request), "x"), NotSent)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# -- aiohttp's exceptions, as AsyncClient meets them: real ones, from a loopback service that misbehaves ---------


@contextlib.asynccontextmanager
async def misbehaving(seen: list[bytes] | None = None) -> AsyncIterator[str]:
    """A raw HTTP/1.1 service on 127.0.0.1, by the path's last segment: ``hangup`` closes once it has the
    request, ``short`` sends 3 of 10 promised body bytes and closes, ``silent`` never answers. Each request
    line is appended to ``seen``. Yields its base URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        line = request.split(b"\r\n", 1)[0]
        if seen is not None:
            seen.append(line)
        path = line.split(b" ")[1].split(b"?")[0]
        if path.endswith(b"/short"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Version: v1\r\n\r\nabc")
        elif path.endswith(b"/silent"):
            await reader.read()  # until the client gives up and closes
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raised(call) -> BaseException:
    try:
        await call()
    except AIOHTTP_TRANSPORT_ERRORS as e:  # AsyncClient catches exactly these
        return e
    raise AssertionError("no exception")


async def test_aiohttp_errors_only_a_failed_connect_is_not_sent():
    """Only a connection that could not be opened may be sent again whatever the call; a service that hung up,
    a body cut off and a read that timed out may each have been acted on (never tried again unless idempotent)."""
    async with misbehaving() as url, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.2)) as http:

        async def get(path: str) -> None:
            async with http.get(url + path) as response:
                await response.read()

        cases = [
            (await raised(lambda: http.get(f"http://127.0.0.1:{closed_port()}/")), NotSent),
            (aiohttp.ConnectionTimeoutError("connect timed out"), NotSent),
            (await raised(lambda: get("/hangup")), TransportError),
            (await raised(lambda: get("/short")), TransportError),
            (await raised(lambda: get("/silent")), TransportError),
        ]
    kinds = [type(e).__name__ for e, _ in cases]
    assert kinds[0] == "ClientConnectorError" and kinds[2:] == [
        "ServerDisconnectedError",
        "ClientPayloadError",
        "SocketTimeoutError",
    ], kinds
    for error, expected in cases:
        ours = aiohttp_transport_error(error, "PUT c/account/x")
        assert type(ours) is expected, (error, ours)
        assert str(ours).startswith(f"PUT c/account/x: {type(error).__name__}")
        # a restore, or a PUT from an iterator: tried again only when nothing was sent
        assert worth_retrying(ours, idempotent=False) is (expected is NotSent)
        assert worth_retrying(ours, idempotent=True)


async def test_tried_counts_every_try_as_tenacity_would():
    """AsyncClient's loop: the first try outside tenacity, the rest in it; the counts and stops are the policy's."""
    policy = RetryPolicy(attempts=3, backoff_initial=0, backoff_max=0, max_retry_after=0.5)

    async def run(outcomes: list[object], idempotent: bool, policy: RetryPolicy = policy) -> tuple[object, int]:
        calls = 0

        async def attempt() -> object:
            nonlocal calls
            outcome = outcomes[min(calls, len(outcomes) - 1)]
            calls += 1
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        try:
            return await tried(policy, idempotent, attempt), calls
        except ReplicatorError as e:
            return type(e), calls

    busy = Unavailable("busy", status=503, retry_after=0.0)
    assert await run(["ok"], True) == ("ok", 1)
    assert await run([busy, "ok"], True) == ("ok", 2)
    assert await run([busy], True) == (Unavailable, 3)  # attempts in all, the first included
    assert await run([busy], False) == (Unavailable, 1)  # a restore, a PUT from an iterator
    assert await run([NotSent("refused"), "ok"], False) == ("ok", 2)  # nothing was sent
    assert await run([BadRequest("no", status=400)], True) == (BadRequest, 1)
    too_long = Unavailable("busy", status=503, retry_after=5.0)
    assert await run([too_long], True) == (Unavailable, 1)  # over max_retry_after: not waited for
    assert await run([busy, too_long], True) == (Unavailable, 2)
    assert await run([busy], True, RetryPolicy(attempts=1)) == (Unavailable, 1)


async def test_async_client_on_a_service_that_misbehaves():
    """Through AsyncClient: a download cut off is a TransportError; a hang-up is tried again only for an
    idempotent call, and exactly as often as the policy says (aiohttp's own resend is off)."""
    seen: list[bytes] = []
    async with misbehaving(seen) as url, AsyncClient(url, "t", retry=RetryPolicy(attempts=2, backoff_max=0)) as rc:
        async with rc.open("c", "account", "short", purpose="service") as d:
            assert d.info.size == 10
            with pytest.raises(TransportError, match="cut off"):
                await d.read()
        seen.clear()
        with pytest.raises(TransportError) as e:
            await rc.restore("c", "account", "hangup", "v1")
        assert type(e.value) is TransportError and len(seen) == 1  # may have been acted on: never sent again
        seen.clear()
        with pytest.raises(TransportError):
            await rc.head("c", "account", "hangup")
        assert [line.split(b" ")[0] for line in seen] == [b"HEAD", b"HEAD"]
    async with AsyncClient(f"http://127.0.0.1:{closed_port()}", "t", retry=RetryPolicy(attempts=1)) as rc:
        with pytest.raises(NotSent):
            await rc.restore("c", "account", "x", "v1")
