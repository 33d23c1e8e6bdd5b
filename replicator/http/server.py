"""Run the aiohttp application: our own answers to unparseable requests, and bounds on slow clients.

Unparseable requests. aiohttp answers a request it cannot parse (a header
or request line over 8190 bytes, a malformed line) itself, before any
middleware runs: a text/plain body that quotes the offending bytes, and an
ERROR log line with the same bytes. If those bytes are an ``Authorization``
header, the token would be echoed and logged. Here such errors get the API's
JSON error shape and a log line that names only the status.

Slow and idle clients (slow loris). aiohttp 3.14.5 has no deadline for
reading a request's line and headers: its ``keepalive_timeout`` (default
3630 s) closes a connection whose next request has not *fully* arrived that
long after the connection opened or the last response ended, so with the
default a client sending a header byte a second holds a connection for an
hour, and it sets no cap on connections. ``ServerLimits`` adds:

* ``header_timeout``: the request line and every header must arrive within
  this many seconds of the connection opening (first request) or of the
  request's first byte (later requests on a kept-alive connection); else
  the connection is closed. Bytes trickling in do not extend it. (The one
  case it does not see: the start of a request pipelined while the previous
  one is still being handled; ``keepalive_timeout`` bounds that one.)
* ``keepalive_timeout``: an idle kept-alive connection is closed after this
  (aiohttp's own timer, passed through). A response sent before its request
  body was read (401, 413) is followed by aiohttp reading and discarding that
  body for at most ``lingering_time`` (10 s), then a close.
* ``max_connections``: past this many open connections a new one is
  answered 503 (``Retry-After: 1``) at once, its request never read, and
  closed when its client closes or ``BUSY_LINGER`` seconds later.
* ``body_timeout``: the longest wait for the next piece of a request body
  (applied where the body is read, :func:`replicator.http.handlers.request_body`).

``handler_cancellation`` stays off (aiohttp's default) on purpose: a client
that disconnects must not cancel a write between its two region puts and the
journal row that records the missing one. A disconnect still fails the body
read, so a cut-off upload stores nothing.

This reaches into aiohttp's ``Server``/``RequestHandler`` (pinned at 3.14.5,
see pyproject.toml).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import signal
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from replicator.http import handlers as api
from replicator.http.tls import ServerTls

log = logging.getLogger("replicator.http.server")


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 15.0  # seconds for the request line and headers
    keepalive_timeout: float = 75.0  # seconds an idle kept-alive connection stays open
    body_timeout: float = 60.0  # seconds waiting for the next piece of a request body
    max_connections: int = 512  # open connections; more are answered 503 and closed


def _busy_response(*, head: bool = False) -> bytes:
    body = json.dumps({"error": "unavailable", "message": "too many open connections; retry later"}).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + (b"" if head else body)
    )


_BUSY = _busy_response()
# The answer to a HEAD has no body (RFC 9110 §9.3.2); a strict client (aiohttp's parser) refuses one that does.
_BUSY_HEAD = _busy_response(head=True)
BUSY_GRACE = 0.1  # seconds a refused connection's request has to start arriving (its method shapes the 503)
BUSY_LINGER = 2.0  # seconds a refused connection may stay half-closed while its client reads the 503


class _Throttled:
    """A warning logged at most once per ``every`` seconds, with how many were not logged: a flood of
    slow or surplus connections must not flood the log too."""

    def __init__(self, message: str, every: float = 10.0):
        self.message, self.every = message, every
        self._next, self._suppressed = 0.0, 0

    def warn(self, loop: asyncio.AbstractEventLoop, **extra) -> None:
        now = loop.time()
        if now < self._next:
            self._suppressed += 1
            return
        log.warning(self.message, extra={**extra, "suppressed": self._suppressed})
        self._next, self._suppressed = now + self.every, 0


_REFUSED = _Throttled("connection refused: too many open connections")
_HEADERS_LATE = _Throttled("connection closed: request headers not received in time")


class _QuietHandler(RequestHandler):
    def __init__(self, manager, *, header_timeout: float | None = None, max_connections: int | None = None, **kwargs):
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._busy = False  # refused (over max_connections): answered 503, closing
        self._refused = False  # the busy 503 was written
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if (
            self._max_connections is not None
            and manager is not None
            and len(manager.connections) > self._max_connections
        ):
            _REFUSED.warn(self._loop, limit=self._max_connections)
            # Serve nothing (start() sees _force_close, and leaves the transport to us). The 503 goes out when
            # the request's first bytes arrive (a HEAD's without its body), or after BUSY_GRACE without them.
            self._force_close = True
            self._busy = True
            self._linger = self._loop.call_later(BUSY_GRACE, self._refuse, b"")
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._busy:
            if not self._refused:
                self._refuse(data)
            return  # a refused connection's request: never parsed beyond its method
        # Idle between requests (start() waits for one): these bytes begin the next request's headers.
        idle = self._waiter is not None and not self._waiter.done()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a whole request line + headers arrived (or a parse error)
            self._disarm_header_timer()
        elif idle and data and self._header_timer is None:
            self._arm_header_timer()

    def _refuse(self, first: bytes) -> None:
        """The 503 of a connection over max_connections, then a gentle close: a full close while the client's
        request is unread makes the kernel send a reset, which can destroy the 503 before the client reads it
        (seen with httpx). Half-close after the 503, discard what arrives, and close when the client does or
        after BUSY_LINGER seconds."""
        transport = self.transport
        if self._refused or transport is None:
            return
        self._refused = True
        if self._linger is not None:
            self._linger.cancel()
        transport.write(_BUSY_HEAD if first.startswith(b"HEAD ") else _BUSY)
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self._loop.call_later(BUSY_LINGER, transport.close)

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timeout and self._header_timer is None:
            self._header_timer = self._loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is not None:
            _HEADERS_LATE.warn(self._loop, seconds=self._header_timeout)
            self.force_close()

    def handle_error(self, request, status: int = 500, exc=None, message=None) -> web.StreamResponse:
        log.warning("unparseable request refused", extra={"status": status, "error": type(exc).__name__})
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        code = "internal" if status >= 500 else "bad_request"
        text = (
            "internal error; see the service log"
            if status >= 500
            else "the request could not be parsed (malformed, or a header or the request line is too long)"
        )
        response = web.Response(
            status=status, text=json.dumps({"error": code, "message": text}), content_type="application/json"
        )
        # Every answer carries a request id (the API document says so); an unparsed request's own is not trusted.
        response.headers["X-Request-Id"] = secrets.token_hex(8)
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same object, our handler class
        return server


def make_runner(app: web.Application, limits: ServerLimits = ServerLimits()) -> QuietAppRunner:
    """The runner for ``app`` with ``limits`` (call ``setup()`` on it, then start a site)."""
    app[api.BODY_TIMEOUT] = limits.body_timeout
    return QuietAppRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.keepalive_timeout,
        header_timeout=limits.header_timeout,
        max_connections=limits.max_connections,
    )


def _nothing_to_reload() -> None:
    log.info("SIGHUP: nothing to re-read without TLS (tokens are re-read every second anyway)")


class StartupFailed(Exception):
    """The service could not open what it needs (key store, KEK, journal, node id)."""


#: Allocations between collections of the youngest generation (CPython's default: 700). A request
#: allocates hundreds of objects (futures, tasks, headers), so the default collects every few
#: requests; a few thousand more objects between collections cost little memory.
GC_YOUNG_THRESHOLD = 20_000


def settle_garbage_collector() -> None:
    """Once started: move what start-up built (modules, the app, its pools) out of the collector's
    sight (``gc.freeze``), so no collection walks it again, and collect the young less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits = ServerLimits(),
    tls: ServerTls | None = None,
    *,
    reuse_port: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM, then close the app's resources. ``StartupFailed`` if a resource
    the service needs does not open (its message says which and why, never a secret). With ``tls``,
    HTTPS, and SIGHUP re-reads its certificate and key. With ``reuse_port`` several processes share
    the port (``replicator.http.processes``)."""
    runner = make_runner(app, limits)
    try:
        await runner.setup()
    except Exception as e:
        raise StartupFailed(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
    try:
        context = tls.context if tls else None
        await web.TCPSite(runner, host, port, ssl_context=context, reuse_port=reuse_port or None).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGHUP (systemctl reload) re-reads the certificate; without TLS it must not end the process.
        loop.add_signal_handler(signal.SIGHUP, tls.reload if tls is not None else _nothing_to_reload)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        settle_garbage_collector()
        await stop.wait()
    finally:
        await runner.cleanup()
