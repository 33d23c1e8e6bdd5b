"""The WAN proxy (tests/support/wan.py) makes the link it promises: delay, a bandwidth cap, stalls."""

import asyncio
import time

from tests.support.wan import Link, WanProxy, mbit


async def echo_server():
    async def echo(r, w):
        while data := await r.read(1 << 16):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def round_trip(port, payload):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    w.write(payload)
    await w.drain()
    got = await r.readexactly(len(payload))
    took = time.monotonic() - start
    w.close()
    return got, took


async def test_each_direction_pays_its_delay():
    server, port = await echo_server()
    async with server, WanProxy(port, Link(delay=0.05), Link(delay=0.1)) as wan:
        got, took = await round_trip(wan.port, b"ping")
    assert got == b"ping"
    assert 0.15 <= took < 0.5


async def test_the_bandwidth_cap_holds_and_every_byte_arrives_in_order():
    server, port = await echo_server()
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with server, WanProxy(port, Link(rate=mbit(40)), Link()) as wan:  # 5 MB/s up: about 0.2 s
        got, took = await round_trip(wan.port, payload)
        assert wan.bytes_up == len(payload)
    assert got == payload
    assert 0.19 <= took < 1.5


async def test_jitter_never_reorders():
    server, port = await echo_server()
    payload = bytes(range(256)) * 1024
    async with server, WanProxy(port, Link(delay=0.01, jitter=0.05), seed=1) as wan:
        got, _ = await round_trip(wan.port, payload)
    assert got == payload


async def test_a_stall_holds_every_byte_until_resumed():
    server, port = await echo_server()
    async with server, WanProxy(port, Link()) as wan:
        wan.stall()
        asyncio.get_running_loop().call_later(0.3, wan.resume)
        got, took = await round_trip(wan.port, b"held")
    assert got == b"held" and took >= 0.29


async def test_the_cap_is_the_links_shared_by_every_connection():
    server, port = await echo_server()
    payload = bytes(range(256)) * 2048  # 512 KiB each, two at once: 1 MiB at 5 MB/s, about 0.2 s
    async with server, WanProxy(port, Link(rate=mbit(40)), Link()) as wan:
        start = time.monotonic()
        results = await asyncio.gather(round_trip(wan.port, payload), round_trip(wan.port, payload))
        took = time.monotonic() - start
    assert all(got == payload for got, _ in results)
    assert took >= 0.19


async def test_it_counts_the_http_requests_and_connections_that_cross_it():
    server, port = await echo_server()
    stream = (
        b"PUT /v1/AUTH_x/c/a HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\nhello\r\n\r\nGET"  # a body that looks like a head
        b"HEAD /v1/AUTH_x/c/a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"PUT /v1/AUTH_x/c/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nGET /\r\n0\r\n\r\n"
        b"DELETE /v1/AUTH_x/c/b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    async with server, WanProxy(port, Link()) as wan:
        await round_trip(wan.port, b"not http at all\r\n\r\n and more")  # forwarded, not counted
        r, w = await asyncio.open_connection("127.0.0.1", wan.port)
        for i in range(0, len(stream), 7):  # in pieces that cut heads, bodies and chunk sizes
            w.write(stream[i : i + 7])
            await w.drain()
            await asyncio.sleep(0.001)
        assert await r.readexactly(len(stream)) == stream
        w.close()
    assert wan.connections == 2
    assert all(q.answered is not None and q.answered >= q.sent for q in wan.requests)  # the echo answers each
    seen = [(q.method, q.target, q.connection) for q in wan.requests]
    assert seen == [
        ("PUT", "/v1/AUTH_x/c/a", 2),
        ("HEAD", "/v1/AUTH_x/c/a", 2),
        ("PUT", "/v1/AUTH_x/c/b", 2),
        ("DELETE", "/v1/AUTH_x/c/b", 2),
    ]
