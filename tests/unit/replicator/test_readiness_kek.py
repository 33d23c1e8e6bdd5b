"""/readyz and `replicator health` with a KEK from a key service: its state is shown, and a service that
is down leaves the process ready (degraded: the KEK is in memory). In-memory service here; the real
Barbican stopped under a running service is in tests/integration/test_barbican_kek.py."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from keys.provider import KeyServiceError
from replicator.health.probes import CRIT, OK, Thresholds, check_kek_service
from replicator.health.readiness import kek_service_state
from replicator.http import handlers
from tests.support.memkek import MemoryKek

REF = "https://kms.example:9311/v1/secrets/6a1e5a0e-6d2a-4d8b-9b55-0f0c1c7b2a01"


class Refusing(MemoryKek):
    def probe(self, timeout=None):
        raise KeyServiceError(self.ref, "no such secret (HTTP 404)", 404, service="Barbican")


class Hanging(MemoryKek):
    def probe(self, timeout=None):
        time.sleep((timeout or 1) + 1.5)  # past the wait: a request whose own timeout failed to end it
        raise KeyServiceError(self.ref, "no answer from the key service (ConnectTimeout)", service="Barbican")


async def test_kek_service_state():
    kek = MemoryKek(REF)
    assert await kek_service_state(kek) == "ok" and kek.probes == 1 and kek.fetches == 0
    kek.down = True
    assert await kek_service_state(kek) == "unreachable: no answer from the key service (ConnectFailure)"
    assert await kek_service_state(Refusing(REF)) == "failing: no such secret (HTTP 404)"
    started = time.monotonic()
    assert await kek_service_state(Hanging(REF), timeout=0.2) == "unreachable: no answer within 0.2s"
    assert time.monotonic() - started < 1.5


async def _readyz(checks: dict[str, str]) -> tuple[int, dict]:
    app = web.Application()

    async def readiness() -> dict[str, str]:
        return checks

    app[handlers.READINESS] = readiness
    response = await handlers.readyz(make_mocked_request("GET", "/readyz", app=app))
    return response.status, json.loads(response.body)


ALL_OK = {"region:ca": "ok", "region:jp": "ok", "journal": "ok", "keyring": "ok", "audit": "ok"}


@pytest.mark.parametrize(
    "change, status, state",
    [
        ({"kek_service": "ok"}, 200, "ok"),
        ({"kek_service": "unreachable: no answer from the key service (ConnectFailure)"}, 200, "degraded"),
        ({"kek_service": "failing: no such secret (HTTP 404)"}, 200, "degraded"),
        ({"kek_service": "unreachable: x", "region:jp": "unavailable: Unavailable"}, 200, "degraded"),
        ({"kek_service": "unreachable: x", "region:jp": "x", "region:ca": "x"}, 503, "unavailable"),
        ({"kek_service": "ok", "keyring": "locked: KeyringLocked"}, 503, "unavailable"),
    ],
)
async def test_a_key_service_that_is_down_leaves_the_service_ready_but_degraded(change, status, state):
    got_status, body = await _readyz({**ALL_OK, **change})
    assert (got_status, body["status"]) == (status, state)
    assert body["checks"] == {**ALL_OK, **change}


async def test_health_grades_the_key_service():
    limits = Thresholds(probe_timeout=0.2)
    kek = MemoryKek(REF)
    check = await check_kek_service(kek, limits)
    assert check.status == OK and check.detail == f"barbican secret {REF} answers (metadata only)"
    assert "probe_ms" in check.figures
    kek.down = True
    check = await check_kek_service(kek, limits)
    assert check.status == CRIT and check.detail == (
        f"KeyServiceError: Barbican secret {REF}: no answer from the key service (ConnectFailure)"
    )
    assert (await check_kek_service(Hanging(REF), limits)).status == CRIT
