"""replicator.client against a real ``replicator serve`` (a subprocess on the embedded default's two local regions).

Two services for the module: ``service`` with the default limits, and
``small`` with ``max_object_bytes`` of 1 MiB and ``--max-connections 2``,
whose 503 for a connection over the limit (``Retry-After: 1``, written by the
server before it reads the request) is the real answer the retry tests ride
out. Each test opens its own client, so no pooled connection is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import select
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from keys import generate_token
from replicator.client import (
    ERRORS,
    AsyncClient,
    BadRequest,
    ByteRange,
    Client,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    ReplicatorError,
    RetryPolicy,
    SinRefused,
    TooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
)
from replicator.embedded import ensure
from tests.support.clouds import write_config
from tests.support.served import Served, free_port
from tests.support.stack import stack_command

MiB = 1 << 20
BIG = 256 * MiB  # streamed both ways; the client process must not hold it
RSS_BOUND = 64 * MiB  # growth of this process's resident memory allowed while BIG streams
FAST = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05)


def _serve(tmp_path_factory, name: str, limits: str = "", args: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    directory = tmp_path_factory.mktemp(name)
    var = directory / "var"
    config, token = ensure(var)
    if limits:
        config.write_text(config.read_text().replace("[regions.ca]", f"[limits]\n{limits}\n\n[regions.ca]", 1))
    served = Served(directory, ["serve", "--var", str(var), *args]).start()
    try:
        yield served.url, token
    finally:
        served.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from _serve(tmp_path_factory, "client")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    yield from _serve(tmp_path_factory, "client-small", f"max_object_bytes = {MiB}", ("--max-connections", "2"))


@pytest.fixture
def rc(service):
    with Client(*service, retry=FAST) as client:
        yield client


@pytest.fixture
async def arc(service):
    async with AsyncClient(*service, retry=FAST) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# -- round trips ---------------------------------------------------------------------------------


def test_sync_round_trip(rc):
    c = unique("sync")
    written = rc.put(c, "account", "profile/e mail%.txt", b"ada@example.com", content_type="text/plain")
    assert written.size == 15 and written.replication == "complete" and set(written.regions) == {"ca", "jp"}
    assert rc.read(c, "account", "profile/e mail%.txt", purpose="service") == b"ada@example.com"
    head = rc.head(c, "account", "profile/e mail%.txt")
    assert (head.version, head.size, head.data_class, head.replication) == (written.version, 15, "account", "complete")
    assert head.regions == {"ca": "current", "jp": "current"} and head.etag == f'"{written.version}"'
    with rc.open(c, "account", "profile/e mail%.txt", purpose="contact") as d:
        assert (d.info.version, d.info.size, d.info.content_type) == (written.version, 15, "text/plain")
        assert b"".join(d.iter_bytes(4)) == b"ada@example.com"

    for i in range(3):
        rc.put(c, "project", f"p{i}", b"v%d" % i)
    assert sorted(o.name for o in rc.objects(c, "project", page_size=1)) == ["p0", "p1", "p2"]  # one a page
    assert {(o.name, o.data_class) for o in rc.objects(c)} == {
        ("profile/e mail%.txt", "account"),
        ("p0", "project"),
        ("p1", "project"),
        ("p2", "project"),
    }
    deleted = rc.delete(c, "project", "p1")
    assert deleted.regions == {"ca": "deleted", "jp": "deleted"} and deleted.version > written.version
    with pytest.raises(NotFound):
        rc.read(c, "project", "p1", purpose="service")
    assert rc.ready().status == "ok"


async def test_async_round_trip(arc, tmp_path):
    c = unique("async")

    async def chunks():
        for part in (b"hello ", b"async ", b"world"):
            yield part

    written = await arc.put(c, "account", "greeting", chunks())
    assert written.size == 17
    assert await arc.read(c, "account", "greeting", purpose="service") == b"hello async world"
    info = await arc.download(c, "account", "greeting", tmp_path / "out.bin", purpose="service")
    assert (tmp_path / "out.bin").read_bytes() == b"hello async world" and info.version == written.version
    assert not list(tmp_path.glob(".*partial"))
    assert (await arc.head(c, "account", "greeting")).size == 17
    assert [o.name async for o in arc.objects(c, "account")] == ["greeting"]
    page = await arc.list_page(c, limit=10)
    assert [o.name for o in page.objects] == ["greeting"] and page.cursor is None
    await arc.delete(c, "account", "greeting", if_match=written.version)
    with pytest.raises(NotFound):
        await arc.head(c, "account", "greeting")
    assert (await arc.ready()).checks["journal"] == "ok"


def test_erasure_and_export(rc, tmp_path):
    c = unique("erase")
    rc.put(c, "account", "a", b"alpha")
    rc.export(c, tmp_path / "export.tar")
    with tarfile.open(tmp_path / "export.tar") as tar:
        assert tar.extractfile("account/a").read() == b"alpha"
    receipt = rc.erase(c)
    status = rc.erasure(receipt.erasure)
    assert status.erasure == receipt.erasure and status.state in ("running", "done")
    assert status.key_destroyed_at == receipt.key_destroyed_at and set(status.regions) == {"ca", "jp"}
    with pytest.raises(Gone):
        rc.read(c, "account", "a", purpose="service")


# -- versions, conditions, ranges (issue 15) ------------------------------------------------------


def test_conditional_writes_and_reads(rc):
    c = unique("cond")
    first = rc.put(c, "account", "doc", b"one", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        rc.put(c, "account", "doc", b"two", if_none_match=True)
    second = rc.put(c, "account", "doc", b"two", if_match=first.etag)  # an ETag as sent, quotes and all
    with pytest.raises(PreconditionFailed):
        rc.put(c, "account", "doc", b"three", if_match=first.version)  # a stale version loses
    with pytest.raises(PreconditionFailed):
        rc.delete(c, "account", "doc", if_match=first.version)
    with rc.open(c, "account", "doc", purpose="service", if_none_match=second.version) as d:
        assert d.info.not_modified and d.info.version == second.version and d.read() == b""
    with rc.open(
        c, "account", "doc", purpose="service", if_none_match=[first.version, "0000000000000001.00000.x"]
    ) as d:
        assert not d.info.not_modified and d.read() == b"two"
    rc.delete(c, "account", "doc", if_match="*")


def test_ranges(rc):
    c = unique("range")
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: across an encryption segment
    rc.put(c, "project", "r", data)
    for byte_range, expected in [
        (ByteRange(0, 0), data[:1]),
        (ByteRange(MiB - 1, MiB), data[MiB - 1 : MiB + 1]),
        (ByteRange(MiB), data[MiB:]),
        (ByteRange.last(4), b"tail"),
    ]:
        with rc.open(c, "project", "r", purpose="service", byte_range=byte_range) as d:
            assert d.read() == expected, byte_range
            cr = d.info.content_range
            assert cr is not None and cr.total == len(data) and cr.last - cr.first + 1 == len(expected)
    assert rc.read(c, "project", "r", purpose="service", byte_range=ByteRange(10, 19)) == data[10:20]
    with pytest.raises(RangeNotSatisfiable) as e:
        rc.read(c, "project", "r", purpose="service", byte_range=ByteRange(len(data)))
    assert e.value.size == len(data)


async def test_async_conditions_ranges_export_and_erasure(arc, tmp_path):
    """The answers whose shape differs (206, 304, 416, a streamed tar, a receipt) through AsyncClient's aiohttp."""
    c = unique("async-more")
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4
    written = await arc.put(c, "project", "r", data)
    async with arc.open(c, "project", "r", purpose="service", byte_range=ByteRange(MiB - 1, MiB)) as d:
        assert await d.read() == data[MiB - 1 : MiB + 1]
        assert d.info.content_range is not None and d.info.content_range.total == len(data)
    assert await arc.read(c, "project", "r", purpose="service", byte_range=ByteRange.last(4)) == b"tail"
    with pytest.raises(RangeNotSatisfiable) as e:
        await arc.read(c, "project", "r", purpose="service", byte_range=ByteRange(len(data)))
    assert e.value.size == len(data) and e.value.request_id
    async with arc.open(c, "project", "r", purpose="service", if_none_match=written.etag) as d:
        assert d.info.not_modified and await d.read() == b""
    with pytest.raises(PreconditionFailed):
        await arc.put(c, "project", "r", b"again", if_none_match=True)
    await arc.export(c, tmp_path / "export.tar")
    with tarfile.open(tmp_path / "export.tar") as tar:
        assert tar.extractfile("project/r").read() == data
    receipt = await arc.erase(c)
    assert (await arc.erasure(receipt.erasure)).key_destroyed_at == receipt.key_destroyed_at
    with pytest.raises(Gone):
        await arc.head(c, "project", "r")


async def test_versions_and_restore(arc):
    c = unique("versions")
    one = await arc.put(c, "account", "v", b"one")
    two = await arc.put(c, "account", "v", b"two")
    await arc.delete(c, "account", "v")
    kept = await arc.versions(c, "account", "v", purpose="service")
    assert [v.deleted for v in kept] == [True, False, False] and kept[0].current
    assert [v.version for v in kept[1:]] == [two.version, one.version]
    assert await arc.read(c, "account", "v", purpose="service", version=one.version) == b"one"
    restored = await arc.restore(c, "account", "v", one.version)
    assert restored.version > two.version
    assert await arc.read(c, "account", "v", purpose="service") == b"one"
    with pytest.raises(BadRequest):
        await arc.restore(c, "account", "v", kept[0].version)  # a delete marker
    with pytest.raises(NotFound):
        await arc.restore(c, "account", "v", "0000000000000001.00000.nowhere")  # never kept
    with pytest.raises(NotFound):
        await arc.read(c, "account", "v", purpose="service", version="0000000000000001.00000.nowhere")


async def test_two_clients_racing_with_if_match_one_wins(service):
    c = unique("race")
    async with AsyncClient(*service, retry=FAST) as a, AsyncClient(*service, retry=FAST) as b:
        first = await a.put(c, "billing", "card", b"one")
        results = await asyncio.gather(
            a.put(c, "billing", "card", b"from a", if_match=first.etag),
            b.put(c, "billing", "card", b"from b", if_match=first.etag),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["PreconditionFailed", "WriteResult"]
        won = next(r for r in results if not isinstance(r, BaseException))
        head = await a.head(c, "billing", "card")
        assert head.version == won.version


# -- streaming a large object ---------------------------------------------------------------------


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Samples this process's resident memory every 10 ms; yields [peak growth in bytes] once done."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page

    base, peak, stop = rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss() - base)
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: list[int] = []
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.append(peak[0])


def pseudo_random(size: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(size // MiB):
        yield rng.randbytes(MiB)


def test_a_large_object_streams_both_ways_in_bounded_memory(rc, tmp_path):
    c = unique("big")
    expected = hashlib.sha256()
    for chunk in pseudo_random(BIG, 1):
        expected.update(chunk)
    with peak_rss_growth() as growth:
        written = rc.put(c, "project", "big.bin", pseudo_random(BIG, 1))  # an iterator: chunked, sent once
        info = rc.download(c, "project", "big.bin", tmp_path / "big.bin", purpose="service")
    assert written.size == info.size == BIG
    got = hashlib.sha256()
    with open(tmp_path / "big.bin", "rb") as f:
        while chunk := f.read(MiB):
            got.update(chunk)
    assert got.hexdigest() == expected.hexdigest()
    print(f"sync: {BIG // MiB} MiB up and down, peak RSS growth {growth[0] / MiB:.1f} MiB")
    assert growth[0] < RSS_BOUND, f"resident memory grew {growth[0] / MiB:.0f} MiB streaming {BIG // MiB} MiB"

    # async: up from the (seekable) file, with its Content-Length; down as an async iterator
    async def both_ways() -> str:
        async with AsyncClient(*rc_target(rc)) as arc:
            with open(tmp_path / "big.bin", "rb") as f:
                await arc.put(c, "project", "big-2.bin", f)
            digest = hashlib.sha256()
            async with arc.open(c, "project", "big-2.bin", purpose="service") as d:
                assert d.info.size == BIG
                async for chunk in d.iter_bytes():
                    digest.update(chunk)
            return digest.hexdigest()

    with peak_rss_growth() as growth:
        assert asyncio.run(both_ways()) == expected.hexdigest()
    print(f"async: {BIG // MiB} MiB up and down, peak RSS growth {growth[0] / MiB:.1f} MiB")
    assert growth[0] < RSS_BOUND, f"resident memory grew {growth[0] / MiB:.0f} MiB streaming {BIG // MiB} MiB"


def rc_target(client: Client) -> tuple[str, str]:
    return str(client._http.base_url).rstrip("/"), client._auth["Authorization"].removeprefix("Bearer ")


# -- every error code its exception ----------------------------------------------------------------


def test_each_error_code_raises_its_exception(service, small):
    c = unique("errors")
    raised: dict[str, ReplicatorError] = {}

    def expect(cls, call):
        with pytest.raises(cls) as e:
            call()
        assert type(e.value) is cls and e.value.code == cls.code and e.value.status in (cls.status, 408)
        raised[cls.code] = e.value

    with Client(*service, retry=FAST) as rc:
        rc.put(c, "account", "x", b"x")
        expect(BadRequest, lambda: rc.put(c, "nosuchclass", "x", b"x"))
        with Client(service[0], "not-a-token") as stranger:
            expect(Unauthorized, lambda: stranger.read(c, "account", "x", purpose="service"))
        expect(Forbidden, lambda: rc.read(c, "account", "x", purpose="analytics"))
        expect(NotFound, lambda: rc.read(c, "account", "missing", purpose="service"))
        expect(PreconditionFailed, lambda: rc.put(c, "account", "x", b"y", if_none_match=True))
        expect(RangeNotSatisfiable, lambda: rc.read(c, "account", "x", purpose="service", byte_range=ByteRange(5)))
        expect(SinRefused, lambda: rc.put(c, "account", "notes", b"my SIN is 130 692 544"))
        rc.erase(c)
        expect(Gone, lambda: rc.read(c, "account", "x", purpose="service"))
    with Client(*small, retry=RetryPolicy(attempts=1)) as rc:
        expect(TooLarge, lambda: rc.put(c, "project", "big", b"x" * (2 * MiB)))
    with Client(*small, retry=RetryPolicy(attempts=1)) as rc:  # no kept-alive connection: a new one is refused
        with held_connections(small[0], 2):
            expect(Unavailable, lambda: rc.read(c, "account", "x", purpose="service"))
    assert raised["unavailable"].retry_after == 1.0
    assert all(e.request_id for code, e in raised.items() if code != "unavailable")  # quotable to an operator
    # 405 and 500 cannot be provoked through the client's calls: tests/unit/client/test_errors.py maps them.
    assert set(raised) == set(ERRORS) - {"method_not_allowed", "internal"}


def test_a_service_that_does_not_answer_is_a_transport_error():
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{free_port()}", "t", retry=FAST) as rc, pytest.raises(TransportError):
        rc.head("c", "account", "x")
    assert time.monotonic() - started < 5


# -- retries ------------------------------------------------------------------------------------


@contextlib.contextmanager
def held_connections(url: str, count: int, release_after: float | None = None) -> Iterator[None]:
    """``count`` idle connections the service took (its --max-connections), closed after the block or after
    ``release_after`` seconds, whichever is first. One it refused (a connection of an earlier test was not
    yet gone) is replaced."""
    port = httpx.URL(url).port
    held: list[socket.socket] = []
    deadline = time.monotonic() + 10
    while True:
        held += [socket.create_connection(("127.0.0.1", port)) for _ in range(count - len(held))]
        time.sleep(0.2)  # the service has accepted them, or answered 503
        refused, _, _ = select.select(held, [], [], 0)
        if not refused:
            break
        assert time.monotonic() < deadline, "the service kept refusing the held connections"
        for s in refused:
            s.close()
            held.remove(s)
    timer = threading.Timer(release_after, lambda: [s.close() for s in held]) if release_after else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.cancel()
        for s in held:
            s.close()


def statuses() -> tuple[list[int], dict]:
    seen: list[int] = []
    return seen, {"response": [lambda response: seen.append(response.status_code)]}


def traced_session(seen: list[int]) -> aiohttp.ClientSession:
    """An aiohttp session (for ``AsyncClient(session=...)``) that appends the status of every answer to ``seen``."""
    trace = aiohttp.TraceConfig()

    async def on_request_end(session, context, params: aiohttp.TraceRequestEndParams) -> None:
        seen.append(params.response.status)

    trace.on_request_end.append(on_request_end)
    return aiohttp.ClientSession(trace_configs=[trace])


def test_retry_after_is_honoured_sync(small):
    seen, hooks = statuses()
    with httpx.Client(event_hooks=hooks) as http, Client(*small, retry=FAST, http=http) as rc:
        rc.put("ra", "account", "x", b"x")
        seen.clear()
    with httpx.Client(event_hooks=hooks) as http, Client(*small, retry=FAST, http=http) as rc:
        with held_connections(small[0], 2, release_after=0.3):
            started = time.monotonic()
            assert rc.read("ra", "account", "x", purpose="service") == b"x"
            waited = time.monotonic() - started
    assert seen == [503, 200]
    assert waited >= 1.0, f"retried after {waited:.2f} s, before the Retry-After of 1 s (backoff is 0.01 s)"


async def test_retry_after_is_honoured_async(small):
    seen: list[int] = []
    async with AsyncClient(*small) as rc:
        await rc.put("ra-async", "account", "x", b"x")
    async with traced_session(seen) as session, AsyncClient(*small, retry=FAST, session=session) as rc:
        with held_connections(small[0], 2, release_after=0.3):
            started = time.monotonic()
            head = await rc.head("ra-async", "account", "x")
            waited = time.monotonic() - started
    assert head.size == 1 and seen == [503, 200] and waited >= 1.0


def test_a_retry_after_over_the_policy_is_not_waited_for(small):
    with Client(*small, retry=RetryPolicy(attempts=5, max_retry_after=0.5)) as rc, held_connections(small[0], 2):
        started = time.monotonic()
        with pytest.raises(Unavailable) as e:
            rc.head("ra", "account", "x")
    assert e.value.retry_after == 1.0 and time.monotonic() - started < 0.5


def test_calls_that_are_not_idempotent_are_tried_once(small):
    seen, hooks = statuses()
    with (
        httpx.Client(event_hooks=hooks) as http,
        Client(*small, retry=FAST, http=http) as rc,
        held_connections(small[0], 2),
    ):
        for call in (
            lambda: rc.restore("ra", "account", "x", "0001732212345678.00000.n1"),  # each restore is a new version
            lambda: rc.put("ra", "account", "y", iter([b"from ", b"a stream"])),  # cannot be sent again
        ):
            seen.clear()
            started = time.monotonic()
            with pytest.raises(Unavailable):
                call()
            assert seen == [503] and time.monotonic() - started < 0.5
        # The same PUT from bytes can be sent again: tried as often as the policy says, each after Retry-After.
        seen.clear()
        with pytest.raises(Unavailable):
            rc.put("ra", "account", "y", b"from bytes")
        assert seen == [503] * FAST.attempts


async def test_async_calls_that_are_not_idempotent_are_tried_once(small):
    seen: list[int] = []

    async def stream():
        yield b"once"

    async with traced_session(seen) as session, AsyncClient(*small, retry=FAST, session=session) as rc:
        with held_connections(small[0], 2):
            with pytest.raises(Unavailable):
                await rc.put("ra", "account", "z", stream())
            with pytest.raises(Unavailable):
                await rc.restore("ra", "account", "x", "0001732212345678.00000.n1")
    assert seen == [503, 503]


def test_the_readme_example_runs_as_written(service, tmp_path):
    """The README's first example, pointed at this test's service (its URL and its token file)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Client("http://127.0.0.1:8700", token)' in code
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev-token").write_text(service[1] + "\n")
    done = subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:8700", service[0])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(" complete") and lines[1:] == ["b'hello world'", "ok"], done.stdout


# -- a real outage on the dev stack ---------------------------------------------------------------------


async def test_a_read_rides_out_a_503_while_both_regions_are_down(stores, tmp_path):
    """``serve`` on Azurite (ca) and Swift (jp); both stopped, a read is 503 ``unavailable``, and a client
    with retries gets the object once they are back (the service's own answer, not a fault wrapper's)."""
    token, token_hash = generate_token()
    _, limited_hash = generate_token()
    config = write_config(tmp_path, stores, all_hash=token_hash, limited_hash=limited_hash)
    served = Served(tmp_path, ["serve", "--config", str(config)]).start()
    seen: list[int] = []
    patient = RetryPolicy(attempts=40, backoff_initial=0.5, backoff_max=1.0)
    try:
        async with (
            traced_session(seen) as session,
            AsyncClient(served.url, token, retry=patient, session=session) as rc,
            AsyncClient(served.url, token, retry=RetryPolicy(attempts=1)) as once,
        ):
            written = await rc.put("outage", "account", "x", b"kept through the outage")
            assert written.replication == "complete"
            for server in ("azurite", "swift-proxy"):
                await asyncio.to_thread(stack_command, "stop", server)
            try:
                with pytest.raises(Unavailable) as e:
                    await once.read("outage", "account", "x", purpose="service")
                assert e.value.request_id

                async def bring_back():
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(stack_command, "up")

                back = asyncio.ensure_future(bring_back())
                seen.clear()
                data = await rc.read("outage", "account", "x", purpose="service")
                await back
            finally:
                await asyncio.to_thread(stack_command, "up")
        assert data == b"kept through the outage"
        assert seen[0] == 503 and seen[-1] == 200 and set(seen) == {503, 200}, seen
    finally:
        served.stop()
