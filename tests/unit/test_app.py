"""The minimal service: liveness, and readiness that reflects both regions."""

from aiohttp.test_utils import TestClient, TestServer

from replicator.app import build_app


async def test_healthz_and_readyz_report_both_local_regions(tmp_path):
    async with TestClient(TestServer(build_app(tmp_path))) as client:
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["regions"] == {"ca": "ok", "jp": "ok"}


async def test_readyz_is_503_when_a_region_is_unusable(tmp_path):
    (tmp_path / "regions").mkdir()
    (tmp_path / "regions" / "jp").write_text("not a directory")
    async with TestClient(TestServer(build_app(tmp_path))) as client:
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["regions"]["ca"] == "ok" and body["regions"]["jp"].startswith("unavailable")
