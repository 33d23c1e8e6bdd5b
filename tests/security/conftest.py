"""Fixtures: the real Azurite + Swift containers of one test (as tests/integration/test_clouds.py makes them)."""

import os

import pytest

from tests.integration.clouds import CA_CONN_VAR, Stores
from tests.stack import stack_env


@pytest.fixture
async def stores(monkeypatch):
    """A fresh Azurite container and Swift container (+ segments), removed after the test."""
    conn = stack_env("REPLICATOR_TEST_AZURE_CONNECTION_STRING")
    clouds_yaml = stack_env("REPLICATOR_TEST_CLOUDS_YAML")
    cloud_name = stack_env("REPLICATOR_TEST_SWIFT_CLOUD")
    monkeypatch.setenv(CA_CONN_VAR, conn)  # configs name this variable, never the secret
    s = Stores(conn, clouds_yaml, cloud_name, os.urandom(6).hex())
    await s.create()
    try:
        yield s
    finally:
        await s.destroy()
