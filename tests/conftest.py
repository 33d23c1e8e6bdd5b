"""Fixtures every suite may use."""

import os

import pytest

from tests.support.clouds import CA_CONN_VAR, Stores
from tests.support.stack import stack_env


@pytest.fixture
async def stores(monkeypatch):
    """A fresh Azurite container and Swift container (+ segments) on the dev stack, removed after the test.

    The ``ca`` credential is put in ``CA_CONN_VAR``: configs name that variable, never the secret
    (and a service started as a child process inherits it).
    """
    conn = stack_env("REPLICATOR_TEST_AZURE_CONNECTION_STRING")
    monkeypatch.setenv(CA_CONN_VAR, conn)
    s = Stores(conn, stack_env("REPLICATOR_TEST_CLOUDS_YAML"), stack_env("REPLICATOR_TEST_SWIFT_CLOUD"),
               os.urandom(6).hex())
    await s.create()
    try:
        yield s
    finally:
        await s.destroy()
