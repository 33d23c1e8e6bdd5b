"""A real HTTP reverse proxy on 127.0.0.1 in front of one store, that can be told to answer 500.

The region driver under test talks to the proxy with its own SDK, so a 500
reaches it exactly as a store's would (status line, headers, Azure-shaped
XML error body), and its own error translation and retry policy decide what
happens. While ``failing`` is off, every request and answer passes through
unchanged: same method, raw path and query (Azure signs them), same headers
minus the hop-by-hop ones, same body.
"""

from __future__ import annotations

import aiohttp
import yarl
from aiohttp import web

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, never forwarded; aiohttp sets its own
# Content-Length and Host.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_AZURE_500 = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code>'
    b"<Message>The server encountered an internal error (injected by the test proxy).</Message></Error>"
)


class ErrorProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.failing = False
        self.answered_500 = 0  # requests answered with the injected 500
        self.passed = 0  # requests passed to the store
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> ErrorProxy:
        # No automatic decompression: the driver must see the store's bytes as they were sent.
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)
        )
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # read in full either way: the client must see an answer, not a reset
        if self.failing:
            self.answered_500 += 1
            return web.Response(
                status=500,
                body=_AZURE_500,
                content_type="application/xml",
                headers={"x-ms-error-code": "InternalError"},
            )
        self.passed += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = yarl.URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    response.headers.add(k, v)
            if request.method != "HEAD":
                response.content_length = len(payload)
            elif "Content-Length" in upstream.headers:  # a HEAD answers the object's size, with no body
                response.headers["Content-Length"] = upstream.headers["Content-Length"]
            await response.prepare(request)
            if request.method != "HEAD":
                await response.write(payload)
            await response.write_eof()
            return response
