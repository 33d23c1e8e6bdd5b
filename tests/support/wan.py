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

    async with WanProxy(upstream_port, Link(delay=0.075, rate=mbit(200))) as wan:
        ... http://127.0.0.1:{wan.port}/...
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

SLICE = 64 << 10  # pacing grain: one write is at most this many bytes


def mbit(n: float) -> float:
    """``n`` Mbit/s in bytes per second."""
    return n * 1e6 / 8


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
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, self.up, "bytes_up"),
                self._pipe(server_r, client_w, self.down, "bytes_down"),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()
            self._tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: Link, counter: str) -> None:
        # What is in flight is at most about one bandwidth-delay product (plus slack): the reader
        # stops reading beyond it, so the sender sees TCP back-pressure as over a real link.
        bdp = (link.rate or 100e6) * (link.delay + link.jitter)
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(max(16, int(bdp // SLICE) + 16))
        loop = asyncio.get_running_loop()

        async def read() -> None:
            due = 0.0
            while chunk := await src.read(SLICE):
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
                setattr(self, counter, getattr(self, counter) + len(chunk))
                await dst.drain()
            with contextlib.suppress(OSError):
                if dst.can_write_eof():
                    dst.write_eof()
            await reader
        finally:
            reader.cancel()
