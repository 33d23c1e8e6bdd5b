"""An aiohttp app served on 127.0.0.1 for the length of a block: a stand-in server a test controls;
and a stand-in HTTP proxy that records what it is asked and refuses it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port (yielded) until the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def refusing_proxy(monkeypatch) -> AsyncIterator[list[str]]:
    """``HTTP_PROXY`` names a "proxy" that records each URL it is asked for (the yielded list) and
    answers 502, for the block; the other proxy variables are cleared (``NO_PROXY`` too)."""
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(status=502)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with serving(app) as port:
        for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        yield seen
