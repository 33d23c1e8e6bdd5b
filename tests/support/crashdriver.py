"""The crash test's harness: the service as a subprocess, a slow link to one region, and a client ledger.

``LatencyRelay`` is a TCP relay on 127.0.0.1 that holds every byte the
server sends back for a fixed delay, like a long-haul link: the service
reaches Swift (``jp``) through it, so each of its Swift round trips takes
that much longer than its Azurite ones, and a kill soon after a write's body
arrived lands between the two regions' puts far more often than it would
on loopback.

``ServiceProcess`` runs ``replicator serve --config`` on a free loopback port,
waits for ``/readyz`` to say both regions answer, and SIGKILLs it.

``Op`` is one request the client sent and what became of it: the ledger the
test checks the regions against.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


class LatencyRelay:
    """Relay 127.0.0.1:<port> → 127.0.0.1:``target``; server-to-client bytes arrive ``delay`` seconds late.

    Runs its own event loop in a thread, so the test's loop being busy never
    changes the delay. A latency, not a bandwidth cap: bytes keep flowing,
    each chunk only shifted in time.
    """

    def __init__(self, target: int, delay: float):
        self.target, self.delay = target, delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="latency-relay", daemon=True)

    def start(self) -> int:
        self._thread.start()
        assert self._ready.wait(10), "the latency relay did not start"
        return self.port

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w, 0.0), self._pipe(server_r, client_w, self.delay))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (server_w, client_w):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        if not delay:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
            writer.close()
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def read():
            try:
                while chunk := await reader.read(1 << 16):
                    queue.put_nowait((time.monotonic() + delay, chunk))
            finally:
                queue.put_nowait((time.monotonic() + delay, b""))

        reading = asyncio.ensure_future(read())
        try:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        finally:
            reading.cancel()
            writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``replicator serve --config CONFIG`` as a child process, started and SIGKILLed at will."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log_path = config, log
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.starts: list[float] = []  # seconds from exec to ready, per start

    async def start(self, session: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        for _ in range(3):  # another process may take the port between probe and bind
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            started = time.monotonic()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from replicator.cli import main; main()",
                        "serve",
                        "--config",
                        str(self.config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.config.parent,
                )
            if await self._ready(session, started + timeout):
                self.starts.append(time.monotonic() - started)
                return
            self.kill()
        raise AssertionError(f"replicator serve did not become ready; its log ends:\n{self.log()[-5000:]}")

    async def _ready(self, session: aiohttp.ClientSession, deadline: float) -> bool:
        """Until ``/readyz`` says both regions answer (not merely "degraded")."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200 and (await r.json())["status"] == "ok":
                        return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- the client's ledger ----------------------------------------------------------------


@dataclass
class Op:
    """One request as the client saw it."""

    id: int
    cycle: int  # which service process it was sent to
    name: str
    kind: str  # "put" | "delete" | "get"
    large: bool = False  # a streamed (chunked) body, not a buffered one
    size: int = 0
    sha: str = ""  # of the plaintext body (put)
    sent_ms: int = 0
    sending: bool = False  # the body is still going out
    outcome: str = "pending"  # acked | answered (a non-2xx) | lost (no answer)
    status: int | None = None
    version: str = ""  # from the answer (put, delete) or X-Version (get)
    replication: str = ""
    regions: dict = field(default_factory=dict)
    phase: str = ""  # for a lost write: where the kill found it
    landed: str = ""  # for a lost write: the version it left in some region


def body_of(seed: int, op_id: int, size: int) -> bytes:
    """The plaintext of a put, recomputed from the seed instead of kept (large bodies add up)."""
    return random.Random(f"{seed}/{op_id}").randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
