"""The HTTP application. For now: liveness and readiness over the two local regions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from regions import NotFound, Region, RegionError
from regions.local import LocalRegion

REGIONS = web.AppKey("regions", dict[str, Region])


async def _probe(region: Region) -> str:
    try:
        await region.head("health/probe")
    except NotFound:
        return "ok"  # the store answered
    except RegionError as e:
        return f"unavailable: {e}"
    return "ok"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    regions = request.app[REGIONS]
    states = await asyncio.gather(*(_probe(r) for r in regions.values()))
    report = dict(zip(regions, states))
    ready = all(s == "ok" for s in states)
    return web.json_response({"status": "ok" if ready else "unavailable", "regions": report},
                             status=200 if ready else 503)


def build_app(var_dir: Path) -> web.Application:
    app = web.Application()

    async def regions_ctx(app: web.Application):
        app[REGIONS] = {"ca": LocalRegion(var_dir / "regions" / "ca", name="ca"),
                        "jp": LocalRegion(var_dir / "regions" / "jp", name="jp")}
        yield
        for region in app[REGIONS].values():
            await region.close()

    app.cleanup_ctx.append(regions_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
