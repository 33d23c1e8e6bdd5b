"""Fixtures every suite may use, and the ``stack`` marker put on every test that needs a server."""

import os

import pytest
from hypothesis import settings

from tests.support import stack
from tests.support.barbican import Barbican
from tests.support.clouds import CA_CONN_VAR, Stores
from tests.support.entra import AzuriteOAuth
from tests.support.stack import stack_env, stack_fixture

# Property tests check what holds, never how fast: on a shared two-core machine one example can take
# longer than hypothesis's default 200 ms deadline, which would fail a correct test.
settings.register_profile("replicator", deadline=None)
settings.load_profile("replicator")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """Mark ``stack`` each test whose fixtures include one made with ``stack_fixture``."""
    for item in items:
        if stack.needs_stack(item):
            item.add_marker(stack.STACK)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    """Tell ``stack_env`` which test is running, so it can fail one that reaches a server unmarked."""
    stack.running = item
    try:
        return (yield)
    finally:
        stack.running = None


@stack_fixture
async def stores(monkeypatch):
    """A fresh Azurite container and Swift container (+ segments) on the dev stack, removed after the test.

    The ``ca`` credential is put in ``CA_CONN_VAR``: configs name that variable, never the secret
    (and a service started as a child process inherits it).
    """
    conn = stack_env("REPLICATOR_TEST_AZURE_CONNECTION_STRING")
    monkeypatch.setenv(CA_CONN_VAR, conn)
    s = Stores(
        conn, stack_env("REPLICATOR_TEST_CLOUDS_YAML"), stack_env("REPLICATOR_TEST_SWIFT_CLOUD"), os.urandom(6).hex()
    )
    await s.create()
    try:
        yield s
    finally:
        await s.destroy()


@stack_fixture
def barbican():
    """The dev stack's Barbican: its test KEK by reference, and secrets the test makes (removed after it)."""
    b = Barbican(
        stack_env("REPLICATOR_TEST_BARBICAN_URL"),
        stack_env("REPLICATOR_TEST_BARBICAN_SECRET"),
        stack_env("REPLICATOR_TEST_BARBICAN_CLOUD"),
        stack_env("REPLICATOR_TEST_CLOUDS_YAML"),
    )
    try:
        yield b
    finally:
        b.close()


@stack_fixture(scope="session")
def azurite_oauth(tmp_path_factory):
    """An Azurite of the tests' own, over HTTPS with ``--oauth basic`` (Entra ID tokens): tests/support/entra.py."""
    server = AzuriteOAuth.start(stack_env("REPLICATOR_TEST_AZURITE_BIN"), tmp_path_factory.mktemp("azurite-oauth"))
    try:
        yield server
    finally:
        server.stop()
