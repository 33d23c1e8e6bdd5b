"""Hostile input against a real ``replicator serve`` (the API: replicator/http/openapi.yaml; issue 8, item 3).

One service for the module: a subprocess on the embedded default (two local
regions under ``var``), with ``limits.max_object_bytes`` at 64 KiB, a second
principal ``limited`` (``write:account``, ``meta:account``,
``read:account:contact``), and short slow-client bounds (``--header-timeout``
and ``--body-timeout`` 1.5 s, ``--max-connections`` 24). Requests go out over
raw sockets (``helpers.http``) so CR, LF, NUL, invalid UTF-8, duplicate
headers and slow bodies reach aiohttp's parser exactly as written.

After every refusal the regions are read behind the service's back: nothing
stored, no temp file, one data file per indexed name
(``helpers.LocalRegions``).

Schemathesis already drives every operation with generated valid and invalid
input and checks that no answer is a 5xx and every error is JSON
(``tests/integration/test_openapi.py``); an oversized header that would echo a
token is covered there too. This module is the hand-written half: the inputs
a generator does not think of.
"""

from __future__ import annotations

import gzip
import re
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from keys import generate_token
from replicator.config import load_config
from replicator.embedded import ensure
from replicator.http.app import build_app
from tests.support.served import (
    LocalRegions,
    Served,
    build,
    closed_by_server,
    connect,
    http,
    read_response,
    send_raw,
)

LIMIT = 64 * 1024
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 24
LIMITED_SCOPES = ["write:account", "meta:account", "read:account:contact"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    var = directory / "var"
    config, token = ensure(var)
    limited, limited_hash = generate_token()
    with open(config, "a") as f:
        scopes = ", ".join(f'"{s}"' for s in LIMITED_SCOPES)
        f.write(
            f'\n[[principals]]\nname = "limited"\ntoken_sha256 = "{limited_hash}"\nscopes = [{scopes}]\n'
            f"\n[limits]\nmax_object_bytes = {LIMIT}\n"
        )
    served = Served(
        directory,
        [
            "serve",
            "--config",
            str(config),
            "--header-timeout",
            str(HEADER_TIMEOUT),
            "--body-timeout",
            str(BODY_TIMEOUT),
            "--max-connections",
            str(MAX_CONNECTIONS),
        ],
    )
    served.start()
    served.var, served.token, served.limited = var, token, limited
    served.regions = LocalRegions(var)
    try:
        yield served
    finally:
        served.stop()
    unhandled = [r for r in served.log_records() if r.get("msg") == "unhandled error"]
    assert not unhandled, f"the service logged unhandled errors: {unhandled}"


def auth(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


def obj(customer: str, name: str, data_class: str = "account") -> str:
    """An object path with customer and name as given: already percent-encoded (or not) by the caller."""
    return f"/v1/objects/{customer}/{data_class}/{name}"


def enc(name: str) -> str:
    return quote(name, safe="/")


@pytest.fixture
def unchanged(svc):
    """The regions hold exactly what they held before the test, and nothing half-written."""
    before = svc.regions.snapshot()
    yield
    svc.regions.assert_whole()
    assert svc.regions.snapshot() == before, "a refused request changed what the regions hold"


def put(svc, target: str, body: bytes = b"x", token: str | None = None, **kw):
    return http(svc.port, "PUT", target, [auth(token or svc.token)], body, **kw)


# -- names and customers ---------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "dot-dot": "..",
    "dot": ".",
    "dot-dot encoded": "%2e%2e",
    "dot-dot mixed case, trailing /": "%2E%2e/",
    "dot-dot inside": "a/%2e%2E/b",
    "dot-dot raw inside": "a/../b",
    "dot last": "a/.",
    "NUL": "%00",
    "NUL inside": "a%00b",
    "SOH": "%01",
    "US": "%1F",
    "DEL": "%7F",
    "C1 NEL": "%C2%85",
    "LF": "a%0Ab",
    "CR LF": "a%0D%0Ab",
    "tab": "a%09b",
    "overlong '..'": "%C0%AE%C0%AE",
    "overlong '.'": "%C0%AE",
    "overlong '/'": "a%C0%AFb",
    "invalid UTF-8 FF": "%FF",
    "invalid UTF-8 inside": "a%FFb",
    "lone continuation byte": "%80",
    "truncated sequence": "%E2%82",
    "UTF-16 surrogate": "%ED%A0%80",
    "past U+10FFFF": "%F4%90%80%80",
    "backslash dot-dot": "..%5Cx",
    "backslash dot-dot inside": "a%5C..%5Cb",
    "backslash dot": "a%5C.",
    "empty segment": "a//b",
    "leading /": "/a",
    "trailing /": "a/",
    "only /": "%2F",
    "encoded //": "a%2F%2Fb",
    "1,025 bytes": "a" * 1025,
    "1,025 bytes (1,024 characters)": "a" * 1023 + "%C3%A9",
    "1,026 bytes of 2-byte characters": "%C3%A9" * 513,
}


def test_hostile_names_are_400_json_and_store_nothing(svc, unchanged):
    wrong = []
    for what, name in HOSTILE_NAMES.items():
        target = obj("cust-1", name)
        for method, headers, body in (
            ("PUT", [auth(svc.token)], b"plaintext"),
            ("GET", [auth(svc.token), ("X-Purpose", "service")], None),
            ("HEAD", [auth(svc.token)], None),
            ("DELETE", [auth(svc.token)], None),
        ):
            resp = http(svc.port, method, target, headers, body)
            ok = resp.status == 400 and (method == "HEAD" or resp.is_json_error("bad_request"))
            if not ok:
                wrong.append(f"{what}: {method} {target[:60]!r} -> {resp.status} {resp.body[:100]!r}")
    assert not wrong, "\n".join(wrong)


def test_name_limit_is_1024_bytes_of_utf8(svc):
    for name in ("a" * 1024, "\u00e9" * 512, "b" * 1022 + "\u00e9"):  # 1024 bytes each
        assert len(name.encode()) == 1024
        resp = put(svc, obj("len-1", enc(name)), name.encode()[:16])
        assert resp.status == 201, resp.body
        resp = http(svc.port, "GET", obj("len-1", enc(name)), [auth(svc.token), ("X-Purpose", "service")])
        assert resp.status == 200 and resp.body == name.encode()[:16]
    resp = http(svc.port, "GET", "/v1/objects/len-1?class=account", [auth(svc.token)])
    assert sorted(o["name"] for o in resp.json()["objects"]) == sorted(
        ["a" * 1024, "\u00e9" * 512, "b" * 1022 + "\u00e9"]
    )
    svc.regions.assert_whole()


def test_unusual_valid_names_round_trip_and_do_not_alias(svc):
    """What is refused is refused for a reason; these are names, and each is its own object."""
    names = {
        "a%5Cb": "a\\b",
        "...": "...",
        "a..b/c.": "a..b/c.",
        "%25FF": "%FF",
        "%25C0%25AE": "%C0%AE",
        "%C3%A9/%C3%BC": "\u00e9/\u00fc",
        "%E2%80%8B": "\u200b",
        "a%2Fb": "a/b",
        "%3F%23": "?#",
    }
    for i, target in enumerate(names):
        assert put(svc, obj("odd-1", target), b"v%d" % i).status == 201, target
    for i, (target, name) in enumerate(names.items()):
        resp = http(svc.port, "GET", obj("odd-1", enc(name)), [auth(svc.token), ("X-Purpose", "service")])
        assert resp.status == 200 and resp.body == b"v%d" % i, (target, resp.status, resp.body)
    resp = http(svc.port, "GET", "/v1/objects/odd-1?class=account", [auth(svc.token)])
    assert sorted(o["name"] for o in resp.json()["objects"]) == sorted(names.values())
    svc.regions.assert_whole()


BAD_CUSTOMERS = {
    "129 characters": "c" * 129,
    "space": "a%20b",
    "non-ASCII": "%C3%A9",
    "encoded /": "a%2Fb",
    "NUL": "a%00",
    "LF": "a%0A",
    "dot": ".",
    "dot-dot": "..",
    "dot-dot encoded": "%2E%2E",
    "backslash": "a%5Cb",
    "colon": "a:b",
    "plus": "a+b",
    "invalid UTF-8": "%FF",
}


def test_customers_outside_the_pattern_are_400_on_every_route(svc, unchanged):
    wrong = []
    for what, c in BAD_CUSTOMERS.items():
        for method, target, headers, body in (
            ("PUT", obj(c, "x"), [auth(svc.token)], b"x"),
            ("GET", obj(c, "x"), [auth(svc.token), ("X-Purpose", "service")], None),
            ("GET", f"/v1/objects/{c}?class=account", [auth(svc.token)], None),
            ("DELETE", f"/v1/customers/{c}", [auth(svc.token)], None),
            ("GET", f"/v1/customers/{c}/export", [auth(svc.token)], None),
        ):
            resp = http(svc.port, method, target, headers, body)
            if not (resp.status == 400 and resp.is_json_error("bad_request")):
                wrong.append(f"{what}: {method} {target!r} -> {resp.status} {resp.body[:100]!r}")
    resp = http(svc.port, "PUT", obj("", "x"), [auth(svc.token)], b"x")  # an empty customer matches no route
    assert resp.status == 404 and resp.is_json_error("not_found")
    assert not wrong, "\n".join(wrong)


# -- bodies over the limit ----------------------------------------------------------------------------------


def _stream_while_reading(sock, head: bytes, pieces, interval: float):
    """Send ``head``, then ``pieces`` one every ``interval`` s from a thread, while this thread reads the
    response. Returns (response, bytes of body sent when the response arrived, all body bytes)."""
    sent, total = [0], sum(len(p) for p in pieces)
    stop = threading.Event()

    def sender():
        for piece in pieces:
            if stop.is_set():
                return
            try:
                sock.sendall(piece)
            except OSError:
                return
            sent[0] += len(piece)
            time.sleep(interval)

    sock.sendall(head)
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        resp = read_response(sock, "PUT")
        at_response = sent[0]
    finally:
        stop.set()
        thread.join(timeout=5)
    return resp, at_response, total


def test_content_length_over_the_limit_is_413_before_the_body_is_read(svc, unchanged):
    total = 2 * 1024 * 1024  # 32 x the limit, sent 8 KiB every 20 ms: 5 s if the server waited for it
    head = build("PUT", obj("big-1", "too-large"), [auth(svc.token), ("Content-Length", str(total))])
    with connect(svc.port) as sock:
        started = time.monotonic()
        resp, at_response, _ = _stream_while_reading(sock, head, [b"\0" * 8192] * (total // 8192), 0.02)
        took = time.monotonic() - started
    assert resp.status == 413 and resp.is_json_error("too_large"), resp.raw[:300]
    assert at_response < total // 4, f"413 came after {at_response} of {total} body bytes"
    assert took < 2, f"413 took {took:.2f}s"
    # One byte over is refused too, on the declared length alone.
    resp = http(svc.port, "PUT", obj("big-1", "one-over"), [auth(svc.token), ("Content-Length", str(LIMIT + 1))])
    assert resp.status == 413


def test_expect_100_continue_refuses_before_inviting_the_body(svc, unchanged):
    """aiohttp's default would answer '100 Continue' to anyone; a refusal comes first, as JSON."""
    for headers, status in (
        ([auth(svc.token), ("Content-Length", str(LIMIT + 1))], 413),
        ([("Content-Length", "10")], 401),
        ([auth("rpl_" + "x" * 43), ("Content-Length", "10")], 401),
    ):
        resp = http(svc.port, "PUT", obj("exp-1", "x"), [("Expect", "100-continue"), *headers])
        assert resp.status == status and resp.interim == [] and resp.is_json_error(), resp.raw[:300]
    resp = http(svc.port, "GET", "/healthz", [("Expect", "something-else")])
    assert resp.status == 417 and resp.is_json_error("bad_request"), resp.raw[:300]


def test_expect_100_continue_invites_a_body_within_the_limit(svc):
    with connect(svc.port) as sock:
        sock.sendall(
            build("PUT", obj("exp-2", "ok"), [auth(svc.token), ("Expect", "100-continue"), ("Content-Length", "5")])
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert read_response(sock, "PUT").status == 201
    svc.regions.assert_whole()


def test_chunked_body_over_the_limit_is_413_and_stores_nothing(svc, unchanged):
    piece = 16 * 1024
    chunk = f"{piece:x}\r\n".encode() + b"\1" * piece + b"\r\n"
    head = build("PUT", obj("big-2", "chunked"), [auth(svc.token), ("Transfer-Encoding", "chunked")])
    pieces = [chunk] * 128 + [b"0\r\n\r\n"]  # 2 MiB, 16 KiB every 10 ms
    with connect(svc.port) as sock:
        resp, at_response, total = _stream_while_reading(sock, head, pieces, 0.01)
    assert resp.status == 413 and resp.is_json_error("too_large"), resp.raw[:300]
    assert at_response < total // 4, f"413 came after {at_response} of {total} bytes"


def test_compressed_body_that_inflates_over_the_limit_is_413(svc, unchanged):
    """A 16 MiB body gzipped to ~16 KiB: under the limit as sent, over it as decoded (a zip bomb)."""
    bomb = gzip.compress(b"\0" * (16 << 20))
    assert len(bomb) < LIMIT
    resp = http(svc.port, "PUT", obj("big-3", "bomb"), [auth(svc.token), ("Content-Encoding", "gzip")], bomb)
    assert resp.status == 413 and resp.is_json_error("too_large"), resp.raw[:300]


def test_request_framing_attacks_are_400(svc, unchanged):
    """Request smuggling shapes: both framings, two lengths, an unknown coding, a bad chunk size."""
    path = obj("smuggle-1", "x")
    cases = {
        "Content-Length and Transfer-Encoding": [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
        "two Content-Lengths": [b"Content-Length: 1", b"Content-Length: 2"],
        "Transfer-Encoding identity": [b"Transfer-Encoding: identity"],
        "negative Content-Length": [b"Content-Length: -1"],
        "Content-Length with a sign": [b"Content-Length: +1"],
    }
    for what, framing in cases.items():
        resp = send_raw(svc.port, build("PUT", path, [auth(svc.token), *framing]) + b"1\r\nx\r\n0\r\n\r\n", "PUT")
        assert resp.status == 400 and resp.is_json_error("bad_request"), (what, resp.raw[:300])
    resp = send_raw(
        svc.port, build("PUT", path, [auth(svc.token), b"Transfer-Encoding: chunked"]) + b"zz\r\nx\r\n0\r\n\r\n", "PUT"
    )
    assert resp.status == 400 and resp.is_json_error("bad_request"), resp.raw[:300]


# -- slow and idle clients -------------------------------------------------------------------------------------


def _trickle(port: int, data: bytes, interval: float, sock=None) -> tuple[float | None, bytes, int]:
    """Send ``data`` one byte every ``interval`` s. (seconds until the server closed or None, bytes read, sent)."""
    sock = sock or connect(port)
    started, got = time.monotonic(), b""
    try:
        for i in range(len(data)):
            try:
                sock.send(data[i : i + 1])
            except OSError:
                return time.monotonic() - started, got, i
            took, more = closed_by_server(sock, interval)
            got += more
            if took is not None:
                return time.monotonic() - started, got, i + 1
        return None, got, len(data)
    finally:
        sock.close()


def _normal_traffic(svc, seconds: float) -> list[str]:
    """Well-behaved clients while a slow one is connected; returns what went wrong (nothing, we hope)."""
    problems, deadline = [], time.monotonic() + seconds
    # 1. one request per connection, back to back
    n = 0
    while time.monotonic() < deadline:
        resp = http(svc.port, "GET", "/healthz")
        if resp.status != 200:
            problems.append(f"healthz {resp.status}")
        n += 1
        time.sleep(0.1)
    if n < 5:
        problems.append(f"only {n} requests went through")
    return problems


def _keepalive_client(svc, requests: int, gap: float) -> list[str]:
    """Requests on one kept-alive connection, ``gap`` s apart: longer in all than the header timeout."""
    problems = []
    with connect(svc.port) as sock:
        for _ in range(requests):
            sock.sendall(build("GET", "/healthz", close=False))
            resp = read_response(sock)
            if resp.status != 200:
                problems.append(f"kept-alive request {resp.status}")
            time.sleep(gap)
    return problems


def _slow_steady_upload(svc, name: str, pieces: int, gap: float) -> list[str]:
    """A body sent in ``pieces`` pieces ``gap`` s apart: longer in all than both timeouts, never idle long."""
    body = bytes(range(256)) * 4 * pieces
    with connect(svc.port) as sock:
        sock.sendall(build("PUT", obj("slow-ok", name), [auth(svc.token), ("Content-Length", str(len(body)))]))
        for i in range(pieces):
            sock.sendall(body[i * 1024 : (i + 1) * 1024])
            time.sleep(gap)
        resp = read_response(sock, "PUT")
    return [] if resp.status == 201 else [f"slow steady upload {resp.status} {resp.body[:100]!r}"]


def test_slow_headers_are_cut_off_and_normal_clients_are_not(svc):
    """A client sending its headers one byte a second is closed at the header deadline, answered nothing;
    meanwhile ordinary requests, a kept-alive connection and a slow but steady upload all succeed."""
    request = build("GET", "/v1/objects/cust-1?class=account", [auth(svc.token)])
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(_trickle, svc.port, request, 1.0)
        others = [
            pool.submit(_normal_traffic, svc, 3.0),
            pool.submit(_keepalive_client, svc, 5, 0.6),
            pool.submit(_slow_steady_upload, svc, "steady", 12, 0.25),
        ]
        took, got, sent = slow.result(timeout=30)
        problems = [p for f in others for p in f.result(timeout=30)]
    assert took is not None, "the slow client was never cut off"
    assert HEADER_TIMEOUT - 0.2 <= took <= HEADER_TIMEOUT + 1.0, f"cut off after {took:.2f}s"
    assert got == b"" and sent < len(request)
    assert not problems, problems
    svc.regions.assert_whole()


def test_slow_headers_of_a_later_request_on_a_kept_alive_connection_are_cut_off(svc):
    sock = connect(svc.port)
    sock.sendall(build("GET", "/healthz", close=False))
    assert read_response(sock).status == 200
    took, got, _ = _trickle(svc.port, build("GET", "/healthz"), 0.5, sock=sock)
    assert took is not None and took <= HEADER_TIMEOUT + 1.0 and got == b"", (took, got)


def test_idle_connections_are_capped_and_closed(svc):
    """Connections that send nothing: past ``--max-connections`` they are answered 503 as soon as the wait
    for their request's first bytes is over (``BUSY_GRACE``, 0.1 s), and every one is closed at the header
    deadline; then the service serves again."""
    extra = 4
    socks = [connect(svc.port) for _ in range(MAX_CONNECTIONS + extra)]
    started = time.monotonic()
    try:
        time.sleep(0.3)
        answered, _, _ = select.select(socks, [], [], 0)
        while len(answered) < extra and time.monotonic() - started < 1.0:  # a loaded machine may be slower
            time.sleep(0.05)
            answered, _, _ = select.select(socks, [], [], 0)
        refused, kept = [], []
        for s in socks:
            got = s.recv(65536) if s in answered else b""
            (refused if got.startswith(b"HTTP/1.1 503 ") else kept).append((s, got))
        assert len(refused) >= extra, f"only {len(refused)} of {len(socks)} connections were refused"
        assert len(kept) <= MAX_CONNECTIONS
        assert all(b'"error": "unavailable"' in got for _, got in refused)
        for s, _ in kept:
            took, got = closed_by_server(s, HEADER_TIMEOUT + 1.5 - (time.monotonic() - started))
            assert took is not None and got == b"", "an idle connection outlived the header deadline"
        assert time.monotonic() - started <= HEADER_TIMEOUT + 1.5
    finally:
        for s in socks:
            s.close()
    assert http(svc.port, "GET", "/healthz").status == 200


def test_stalled_body_is_408_and_stores_nothing(svc, unchanged):
    with connect(svc.port) as sock:
        sock.sendall(build("PUT", obj("stall-1", "x"), [auth(svc.token), ("Content-Length", "1000")]) + b"0123456789")
        started = time.monotonic()
        resp = read_response(sock, "PUT")
        took = time.monotonic() - started
    assert resp.status == 408 and resp.is_json_error("bad_request"), resp.raw[:300]
    assert BODY_TIMEOUT - 0.2 <= took <= BODY_TIMEOUT + 1.0, took


# -- tokens and purposes -------------------------------------------------------------------------------------


def test_malformed_unknown_and_duplicate_tokens_are_401_json(svc, unchanged):
    valid = svc.token
    cases = {
        "no header": [],
        "Bearer": [b"Authorization: Bearer"],
        "Bearer and spaces": [b"Authorization: Bearer   "],
        "Bearer tab": [b"Authorization: Bearer\t" + valid.encode()],
        "Basic": [b"Authorization: Basic ZGV2OmRldg=="],
        "other scheme": [b"Authorization: Token " + valid.encode()],
        "token only": [b"Authorization: " + valid.encode()],
        "8,000-character token": [b"Authorization: Bearer " + b"t" * 8000],
        "non-ASCII (UTF-8)": ["Authorization: Bearer t\u00f6k\u00e9n-\u2603".encode()],
        "non-ASCII (Latin-1 byte)": [b"Authorization: Bearer t\xf6ken"],
        "unknown token": [auth(generate_token()[0])],
        "valid token cut short": [auth(valid[:-1])],
        "valid token and more": [auth(valid + "x")],
        "valid token, other case": [auth(valid.swapcase())],
        "two headers, valid first": [auth(valid), auth("nope")],
        "two headers, valid second": [auth("nope"), auth(valid)],
        "two headers, both valid": [auth(valid), auth(valid)],
    }
    wrong = []
    for what, headers in cases.items():
        resp = http(svc.port, "PUT", obj("tok-1", "x"), headers, b"x")
        if not (
            resp.status == 401
            and resp.is_json_error("unauthorized")
            and resp.header("WWW-Authenticate") == "Bearer"
            and valid[4:16].encode() not in resp.raw
        ):
            wrong.append(f"{what}: {resp.status} {resp.raw[:200]!r}")
    assert not wrong, "\n".join(wrong)
    # The scheme is case-insensitive (RFC 9110 11.1): the same valid token is accepted so.
    resp = http(svc.port, "GET", "/v1/objects/tok-1?class=account", [("Authorization", f"bEARER {valid}")])
    assert resp.status == 200


def test_a_10_kib_token_is_a_json_400_that_echoes_and_logs_nothing(svc):
    secret = generate_token()[0]
    resp = http(svc.port, "GET", "/v1/objects/tok-2?class=account", [auth(secret + "x" * (10 * 1024))])
    assert resp.status == 400 and resp.is_json_error("bad_request"), resp.raw[:300]
    time.sleep(0.2)
    assert secret[4:16].encode() not in resp.raw and secret[4:16].encode() not in svc.logs()


async def test_revoked_token_is_401(tmp_path):
    """A token whose principal was taken out of the config (the way to revoke one) no longer opens anything."""
    config_path, token = ensure(tmp_path / "var")
    second, second_hash = generate_token()
    original = config_path.read_text()
    config_path.write_text(
        original + f'\n[[principals]]\nname = "soon-revoked"\ntoken_sha256 = "{second_hash}"\n'
        f'scopes = ["meta:account"]\n'
    )

    async def status_with(token_: str) -> int:
        app = build_app(load_config(config_path))
        async with TestClient(TestServer(app)) as client:
            resp = await client.get(
                "/v1/objects/rev-1", params={"class": "account"}, headers={"Authorization": f"Bearer {token_}"}
            )
            if resp.status == 401:
                assert (await resp.json())["error"] == "unauthorized"
            return resp.status

    assert await status_with(second) == 200
    config_path.write_text(original)  # revoked
    assert await status_with(second) == 401
    assert await status_with(token) == 200


@pytest.fixture(scope="module")
def readable(svc):
    """An account object the limited principal may read for 'contact' (and only for that)."""
    target = obj("purpose-1", "email")
    resp = http(svc.port, "PUT", target, [auth(svc.limited)], b"ada@example.com")
    assert resp.status == 201, resp.body
    return target


def test_right_class_wrong_purpose_is_403(svc, readable):
    def read(token, purpose):
        return http(svc.port, "GET", readable, [auth(token), ("X-Purpose", purpose)])

    resp = read(svc.limited, "service")  # a purpose the class allows, but not this principal
    assert resp.status == 403 and resp.is_json_error("forbidden") and b"ada@" not in resp.body
    resp = read(svc.limited, "analytics")  # a purpose the class never allows
    assert resp.status == 403 and resp.is_json_error("forbidden")
    resp = read(svc.token, "analytics")  # not even with every scope
    assert resp.status == 403 and resp.is_json_error("forbidden")
    resp = read(svc.limited, "contact")
    assert resp.status == 200 and resp.body == b"ada@example.com"


def test_x_purpose_injection_is_refused_and_never_reflected_or_logged(svc, readable):
    marker = b"evil-7f3a9c"
    cases = {
        # A CRLF injected by a client that does not check header values: on the wire these are well-formed
        # headers. A second X-Purpose (to override or add a purpose) is refused; an extra header is inert.
        "CRLF + second X-Purpose (override)": [b"X-Purpose: analytics\r\nX-Purpose: contact"],
        "CRLF + second X-Purpose (add)": [b"X-Purpose: contact\r\nX-Purpose: service"],
        "CRLF + other header": [b"X-Purpose: service\r\nX-" + marker + b": 1"],
        "bare CR": [b"X-Purpose: contact\rX-" + marker + b": 1"],
        "bare LF": [b"X-Purpose: contact\nX-" + marker + b": 1"],
        "NUL": [b"X-Purpose: contact\x00" + marker],
        "obs-fold": [b"X-Purpose: contact\r\n X-" + marker + b": 1"],
        "list": [b"X-Purpose: contact, service"],
        "list (other order)": [b"X-Purpose: analytics, contact"],
        "parameter": [b"X-Purpose: contact;" + marker],
        "percent-encoded CRLF": [b"X-Purpose: contact%0d%0aX-" + marker + b":%201"],
        "non-ASCII": ["X-Purpose: c\u00f6ntact".encode()],
        "Latin-1 byte": [b"X-Purpose: contact\xff"],
        "upper case": [b"X-Purpose: CONTACT"],
        "too long": [b"X-Purpose: contact" + b"x" * 100],
        "empty": [b"X-Purpose: "],
    }
    wrong = []
    for what, headers in cases.items():
        resp = send_raw(svc.port, build("GET", readable, [auth(svc.limited), *headers]))
        if resp.status not in (400, 403) or not resp.is_json_error():
            wrong.append(f"{what}: {resp.status} {resp.raw[:200]!r}")
        if marker in resp.raw.split(b"\r\n\r\n")[0].lower() or b"ada@" in resp.raw:
            wrong.append(f"{what}: reflected in the response: {resp.raw[:300]!r}")
    assert not wrong, "\n".join(wrong)
    time.sleep(0.2)
    assert marker not in svc.logs().lower()


def test_x_request_id_cannot_split_the_response(svc):
    cases = {
        "CRLF + Set-Cookie": [b"X-Request-Id: abc\r\nSet-Cookie: evil=1"],
        "bare CR": [b"X-Request-Id: abc\rSet-Cookie: evil=1"],
        "bare LF": [b"X-Request-Id: abc\nSet-Cookie: evil=1"],
        "percent-encoded CRLF": [b"X-Request-Id: abc%0d%0aSet-Cookie:%20evil=1"],
        "NUL": [b"X-Request-Id: abc\x00def"],
        "DEL": [b"X-Request-Id: abc\x7fdef"],
        "non-ASCII": ["X-Request-Id: abc\u2028Set-Cookie: evil=1".encode()],
        "65 characters": [b"X-Request-Id: " + b"r" * 65],
        "two": [b"X-Request-Id: one", b"X-Request-Id: two"],
    }
    for what, headers in cases.items():
        resp = send_raw(svc.port, build("GET", "/healthz", headers))
        assert resp.status in (200, 400), (what, resp.raw[:300])
        assert not resp.all("Set-Cookie"), (what, resp.raw[:300])
        ids = resp.all("X-Request-Id")
        assert len(ids) <= 1 and all(re.fullmatch(r"[\x20-\x7e]{1,64}", i) for i in ids), (what, ids)
        if resp.status == 400:
            assert resp.is_json_error("bad_request"), (what, resp.raw[:300])


def test_an_unparseable_request_still_gets_a_request_id(svc, unchanged):
    """Found by schemathesis: a request the HTTP parser refuses (here a non-numeric Content-Length)
    is answered 400 with the JSON error and, as every answer, an X-Request-Id (a fresh one)."""
    resp = http(svc.port, "DELETE", obj("hostile", "x"), [auth(svc.token), ("Content-Length", "u")])
    assert resp.status == 400 and b'"bad_request"' in resp.body
    request_id = resp.header("X-Request-Id")
    assert request_id is not None and len(request_id) == 16
