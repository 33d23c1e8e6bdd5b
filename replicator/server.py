"""Run the aiohttp application, answering even unparseable requests in our own terms.

aiohttp answers a request it cannot parse (a header or request line over
8190 bytes, a malformed line) itself, before any middleware runs: a
text/plain body that quotes the offending bytes, and an ERROR log line with
the same bytes. If those bytes are an ``Authorization`` header, the token
would be echoed and logged. Here such errors get the API's JSON error shape
and a log line that names only the status. This reaches into aiohttp's
``Server``/``RequestHandler`` (pinned at 3.14.5, see pyproject.toml).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("replicator.server")


class _QuietHandler(RequestHandler):
    def handle_error(self, request, status: int = 500, exc=None, message=None) -> web.StreamResponse:
        log.warning("unparseable request refused", extra={"status": status, "error": type(exc).__name__})
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        code = "internal" if status >= 500 else "bad_request"
        text = ("internal error; see the service log" if status >= 500 else
                "the request could not be parsed (malformed, or a header or the request line is too long)")
        response = web.Response(status=status, text=json.dumps({"error": code, "message": text}),
                                content_type="application/json")
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


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then close the app's resources."""
    runner = QuietAppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
