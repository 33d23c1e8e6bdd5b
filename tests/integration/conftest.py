"""A running service (in-process aiohttp server) over the embedded default, with an injectable clock."""

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from replicator.config import load_config
from replicator.embedded import ensure
from replicator.http.app import build_app


class WallClock:
    """Milliseconds since the epoch; tests move it forward to age objects."""

    def __init__(self):
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, days: float) -> None:
        self.offset_ms += int(days * 86_400_000)


@pytest.fixture
def clock():
    return WallClock()


@pytest.fixture
def var(tmp_path):
    return tmp_path / "var"


@pytest.fixture
async def api(var, clock):
    config_path, token = ensure(var)
    app = build_app(load_config(config_path), now_ms=clock, workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        client.token = token
        client.auth = {"Authorization": f"Bearer {token}"}
        client.app_ = app
        yield client
