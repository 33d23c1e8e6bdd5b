"""A WAN in user space: a TCP proxy on 127.0.0.1 that delays, caps, jitters and stalls what it forwards.

This kernel has no ``netem`` qdisc, so the trans-Pacific link is made here:
every chunk read from one side is held until ``delay`` (+ up to ``jitter``)
seconds after it arrived, then written at no more than ``rate`` bytes per
second (the cap shared by every connection, as on one link), in order, each
direction on its own (``Link`` for each). ``stall()``
stops forwarding in both directions (bytes pile up, nothing is lost) until
``resume()``; a peer then sees a connection that is open and silent, as over
a dead route. Used by the fault tests and by ``bench/api.py`` (the far region
at 75 ms each way and 200 Mbit/s); point a client at it through a
``clouds.yaml`` copy with ``object_store_endpoint_override``.

It also counts what crosses it: ``connections`` opened, and ``requests``, each
HTTP/1.1 request the clients sent (method, target, which connection, when it
was sent and answered), read off the client-to-server bytes as they pass
(:class:`RequestCounter`), so a test can count the round trips one operation
costs, and see which waited for another's answer, instead of timing it.

    async with WanProxy(upstream_port, Link(delay=0.075, rate=mbit(200))) as wan:
        ... http://127.0.0.1:{wan.port}/...
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

SLICE = 64 << 10  # pacing grain: one write is at most this many bytes


def mbit(n: float) -> float:
    """``n`` Mbit/s in bytes per second."""
    return n * 1e6 / 8


@dataclass
class Request:
    """One HTTP request seen on its way to the server: ``connection`` numbers the TCP connection
    it came on (from 1, in the order they were opened); ``sent`` is the loop time its head reached
    the proxy, ``answered`` when the first byte of its answer left the proxy for the client (None:
    not yet). Clients here send one request at a time on a connection (no HTTP pipelining), so the
    next bytes from the server after a request are its answer."""

    method: str
    target: str
    connection: int
    sent: float = 0.0
    answered: float | None = None


class RequestCounter:
    """Splits one connection's client-to-server bytes into HTTP/1.1 requests: a head (request line
    and headers, up to the blank line), then a body of ``Content-Length`` bytes or chunked. Calls
    ``seen(method, target)`` as each head is complete. A stream that is not HTTP is forwarded all
    the same, uncounted."""

    def __init__(self, seen: Callable[[str, str], None]) -> None:
        self._seen = seen
        self._buf = bytearray()
        self._state = "head"  # head | body | size | chunk | trailer | off (not HTTP)
        self._left = 0  # body or chunk bytes (chunk: with its CRLF) still to skip

    def feed(self, data: bytes) -> None:
        if self._state == "off":
            return
        try:
            self._feed(data)
        except ValueError:
            self._state = "off"
            self._buf.clear()

    def _feed(self, data: bytes) -> None:
        if self._state in ("body", "chunk") and not self._buf:  # skip a body without copying it
            n = min(self._left, len(data))
            self._left -= n
            if self._left:
                return
            self._state = "head" if self._state == "body" else "size"
            data = data[n:]
        self._buf += data
        buf = self._buf
        while buf:
            if self._state in ("body", "chunk"):
                n = min(self._left, len(buf))
                del buf[:n]
                self._left -= n
                if self._left:
                    return
                self._state = "head" if self._state == "body" else "size"
                continue
            sep = b"\r\n\r\n" if self._state == "head" else b"\r\n"
            end = buf.find(sep)
            if end < 0:
                return
            text = bytes(buf[:end])
            del buf[: end + len(sep)]
            if self._state == "head":
                self._head(text.lstrip(b"\r\n"))
            elif self._state == "size":
                size = int(text.split(b";")[0], 16)
                self._state, self._left = ("trailer", 0) if size == 0 else ("chunk", size + 2)
            elif not text:  # the blank line that ends the trailer
                self._state = "head"

    def _head(self, head: bytes) -> None:
        if not head:
            return
        lines = head.split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x request")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        self._seen(method, target)
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self._state = "size"
        elif length := int(headers.get(b"content-length", b"0")):
            self._state, self._left = "body", length


@dataclass(frozen=True)
class Link:
    """One direction of the link: one-way delay (s), extra random delay up to ``jitter`` (s), and a
    bandwidth cap in bytes/s (``None``: uncapped). Jitter never reorders bytes (TCP would not)."""

    delay: float = 0.0
    rate: float | None = None
    jitter: float = 0.0


def far_clouds_yaml(clouds_yaml: str, cloud: str, endpoint: str, port: int, dest: Path) -> Path:
    """A copy of ``clouds_yaml`` whose ``cloud`` reaches its object store (catalog ``endpoint``)
    through 127.0.0.1:``port``; Keystone is still reached directly (a token is fetched once an hour)."""
    config = yaml.safe_load(Path(clouds_yaml).read_text())
    parts = urlsplit(endpoint)
    config["clouds"][cloud]["object_store_endpoint_override"] = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)  # it holds the cloud's password, like the original
    return dest


def port_of(endpoint: str) -> int:
    port = urlsplit(endpoint).port
    assert port is not None, f"no port in {endpoint!r}"
    return port


class WanProxy:
    """Forwards every connection to ``127.0.0.1:upstream_port`` through ``up`` (client to server)
    and ``down`` (server to client); ``down`` defaults to ``up``."""

    def __init__(self, upstream_port: int, up: Link, down: Link | None = None, *, seed: int | None = None):
        self.upstream_port = upstream_port
        self.up, self.down = up, down or up
        self.port = 0
        self.bytes_up = 0  # forwarded client to server
        self.bytes_down = 0
        self.connections = 0  # accepted so far
        self.requests: list[Request] = []  # every HTTP request forwarded so far, in order
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._random = random.Random(seed)
        # The cap is the link's, shared by every connection: when each direction is next free to send.
        self._free = {"bytes_up": 0.0, "bytes_down": 0.0}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> WanProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stall(self) -> None:
        """Stop forwarding (both directions, every connection) until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        self.connections += 1
        connection = self.connections
        loop = asyncio.get_running_loop()
        latest: list[Request] = []  # this connection's last request

        def seen(method: str, target: str) -> None:
            latest[:] = [Request(method, target, connection, loop.time())]
            self.requests.append(latest[0])

        def answering(chunk: bytes) -> None:
            if latest and latest[0].answered is None:
                latest[0].answered = loop.time()

        counter = RequestCounter(seen)
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, self.up, "bytes_up", counter.feed),
                self._pipe(server_r, client_w, self.down, "bytes_down", sent=answering),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()
            self._tasks.discard(task)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        link: Link,
        counter: str,
        seen: Callable[[bytes], None] = lambda chunk: None,
        sent: Callable[[bytes], None] = lambda chunk: None,
    ) -> None:
        # What is in flight is at most about one bandwidth-delay product (plus slack): the reader
        # stops reading beyond it, so the sender sees TCP back-pressure as over a real link.
        bdp = (link.rate or 100e6) * (link.delay + link.jitter)
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(max(16, int(bdp // SLICE) + 16))
        loop = asyncio.get_running_loop()

        async def read() -> None:
            due = 0.0
            while chunk := await src.read(SLICE):
                seen(chunk)
                # Jitter delays a chunk, never past one sent after it: due times only grow.
                due = max(due, loop.time() + link.delay + self._random.uniform(0, link.jitter))
                await queue.put((due, chunk))
            await queue.put((0.0, b""))

        reader = asyncio.ensure_future(read())
        try:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                if link.rate:
                    free = self._free[counter] = max(self._free[counter], loop.time()) + len(chunk) / link.rate
                    await asyncio.sleep(max(0.0, free - loop.time()))
                await self._flowing.wait()
                dst.write(chunk)
                sent(chunk)
                setattr(self, counter, getattr(self, counter) + len(chunk))
                await dst.drain()
            with contextlib.suppress(OSError):
                if dst.can_write_eof():
                    dst.write_eof()
            await reader
        finally:
            reader.cancel()
