"""What the security tests share: a real ``replicator serve``, a raw HTTP/1.1 client, and what is on disk.

* ``Served`` runs ``replicator serve`` as a subprocess on 127.0.0.1 (a free
  port), its standard output and standard error captured to files, so the
  real HTTP parser and the real logs are what the tests see.
* ``http`` / ``send_raw`` speak HTTP/1.1 over a plain socket: hostile bytes
  (CR, LF, NUL, overlong UTF-8, duplicate headers, slow bodies) go out exactly
  as written, which ``requests`` and aiohttp's client refuse or rewrite.
* ``LocalRegions`` reads the embedded default's two local regions behind the
  service's back (their SQLite index read-only, and the ``data``/``tmp``
  directories), to show that a refused request left nothing behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.localstore import stored_count

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the service as a subprocess ---------------------------------------------------------------


class Served:
    """``replicator serve <args> --host 127.0.0.1 --port <free>`` with its output in ``directory``."""

    def __init__(self, directory: Path, args: list[str], env: dict[str, str] | None = None):
        self.directory = directory
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.stdout_path = directory / "service.stdout"
        self.stderr_path = directory / "service.stderr"
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3, timeout: float = 30) -> Served:
        for _ in range(attempts):  # another process may take the port between probe and bind
            self.port = free_port()
            with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from replicator.cli import main; main()",
                        *self.args,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                    ],
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    cwd=self.directory,
                    env=self.env,
                )
            if self._wait_up(timeout):
                return self
            self.stop()
        pytest.fail(f"replicator serve did not start; its output:\n{self.logs().decode(errors='replace')[-20_000:]}")

    def _wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if http(self.port, "GET", "/healthz", timeout=2).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> bytes:
        return b"".join(p.read_bytes() for p in (self.stdout_path, self.stderr_path) if p.exists())

    def log_records(self) -> list[dict]:
        """The JSON log lines of standard error (other lines, such as click's, are skipped)."""
        out = []
        for line in self.stderr_path.read_bytes().splitlines() if self.stderr_path.exists() else []:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


# -- raw HTTP/1.1 ------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes = b""
    interim: list[int] = field(default_factory=list)  # 1xx statuses seen before this one

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def is_json_error(self, code: str | None = None) -> bool:
        if not (self.header("Content-Type") or "").startswith("application/json"):
            return False
        body = self.json()
        return isinstance(body, dict) and set(body) == {"error", "message"} and (code is None or body["error"] == code)


def build(method: str, target: str | bytes, headers=(), body: bytes | None = None, *, close: bool = True) -> bytes:
    """The request's bytes, exactly: ``headers`` are (name, value) pairs or raw header lines (bytes)."""
    target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if close:
        lines.append(b"Connection: close")
    for h in headers.items() if isinstance(headers, dict) else headers:
        if isinstance(h, bytes):
            lines.append(h)
        else:
            k, v = h
            lines.append(k.encode("latin-1") + b": " + (v if isinstance(v, bytes) else v.encode("utf-8")))
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def connect(port: int, timeout: float = 10) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_response(sock: socket.socket, method: str = "GET") -> Response:
    """One response (after any 1xx) from ``sock``: by Content-Length, else until the server closes."""
    buf, interim = b"", []
    raw = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a response: {buf[:200]!r}")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        raw += head + b"\r\n\r\n"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        if 100 <= status < 200:
            interim.append(status)
            continue
        break
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    if method == "HEAD" or status in (204, 304):
        length = 0
    if length is None:
        while chunk := sock.recv(65536):
            buf += chunk
        body = buf
    else:
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        body = buf[:length]
    return Response(status, headers, body, raw + body, interim)


def send_raw(port: int, data: bytes, method: str = "GET", timeout: float = 10) -> Response:
    with connect(port, timeout) as s:
        s.sendall(data)
        return read_response(s, method)


def http(
    port: int, method: str, target: str | bytes, headers=(), body: bytes | None = None, timeout: float = 10
) -> Response:
    return send_raw(port, build(method, target, headers, body), method, timeout)


def closed_by_server(sock: socket.socket, within: float) -> tuple[float | None, bytes]:
    """Wait up to ``within`` seconds for the server to close ``sock``: (seconds it took or None, bytes read)."""
    started, got = time.monotonic(), b""
    while (left := within - (time.monotonic() - started)) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return time.monotonic() - started, got
        if not chunk:
            return time.monotonic() - started, got
        got += chunk
    return None, got


# -- what the local regions hold ---------------------------------------------------------------


class LocalRegions:
    """The embedded default's regions ``ca`` and ``jp`` under ``var/regions``, read behind the service."""

    def __init__(self, var: Path, names=("ca", "jp")):
        self.roots = {r: var / "regions" / r for r in names}

    def names(self, region: str) -> set[str]:
        index = self.roots[region] / "index.sqlite3"
        if not index.exists():
            return set()
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
        try:
            return {bytes(row[0]).decode() for row in db.execute("SELECT name FROM objects")}
        finally:
            db.close()

    def files(self, region: str, sub: str) -> list[Path]:
        d = self.roots[region] / sub
        return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []

    def snapshot(self) -> dict[str, tuple[frozenset[str], int, int]]:
        """Per region: the stored names, how many data files, how many temp files."""
        return {
            r: (frozenset(self.names(r)), stored_count(self.roots[r]), len(self.files(r, "tmp"))) for r in self.roots
        }

    def assert_whole(self) -> None:
        """Nothing half-written: no temp file, one data file per stored name, the same names in both."""
        for r in self.roots:
            assert self.files(r, "tmp") == [], f"{r}: temp files left: {self.files(r, 'tmp')}"
            assert stored_count(self.roots[r]) == len(self.names(r)), f"{r}: stored bytes do not match the index"
        first, *rest = self.roots
        for r in rest:
            assert self.names(r) == self.names(first), f"regions {first} and {r} hold different names"


# -- looking for secrets ------------------------------------------------------------------------


def windows(secret: str, size: int = 12) -> set[bytes]:
    """``secret`` and every ``size``-character substring of it, as bytes."""
    raw = secret.encode()
    return {raw} | {raw[i : i + size] for i in range(max(1, len(raw) - size + 1))}


def files_under(root: Path) -> list[Path]:
    """Every regular file under ``root``, hidden ones and SQLite journals included (symlinks not followed)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def find(haystacks: dict[str, bytes], needles: dict[str, set[bytes]]) -> list[str]:
    """``"<needle name> in <haystack name>"`` for every needle form found in a haystack."""
    found = []
    for hname, hay in haystacks.items():
        for nname, forms in needles.items():
            for form in forms:
                if form in hay:
                    found.append(f"{nname} ({form[:24]!r}) in {hname}")
                    break
    return found


def which(haystacks: dict[str, bytes], needles: dict[str, set[bytes]]) -> set[str]:
    """The names of the needles found in any haystack."""
    return {n for n, forms in needles.items() if any(f in hay for hay in haystacks.values() for f in forms)}
