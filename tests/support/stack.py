"""The dev stack's servers, as tests reach them: required, never optional.

A suite that needs Azurite, Swift or PostgreSQL reads its address from the
variables `deploy/dev/stack env` prints. When one is missing the test fails
and names the server: a missing server must never look like a passing run.

Which tests need a server is known from the fixtures, not remembered by each
test. A fixture that starts or hands out a server is made with
:func:`stack_fixture`; ``tests/conftest.py`` marks ``stack`` every test whose
fixture closure holds one, so ``pytest -m "not stack"`` runs without any
server. A parametrized fixture with one server-backed case marks only that
case (``pytest.param("postgresql", marks=STACK)``). And :func:`stack_env`, the
one door to the servers' addresses, fails a test that reaches a server
without the marker: nothing can forget it.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

#: The marker of a test that needs a dev-stack server (registered in pyproject.toml).
STACK = pytest.mark.stack

_SERVERS = {
    "REPLICATOR_TEST_AZURE_CONNECTION_STRING": "Azurite",
    "REPLICATOR_TEST_CLOUDS_YAML": "Keystone + Swift",
    "REPLICATOR_TEST_SWIFT_CLOUD": "Keystone + Swift",
    "REPLICATOR_TEST_PG_DSN": "PostgreSQL",
    "REPLICATOR_TEST_PG_PAIR_DSN": "the PostgreSQL pair (`deploy/dev/stack pg-pair`)",
    "REPLICATOR_TEST_BARBICAN_URL": "Barbican",
    "REPLICATOR_TEST_BARBICAN_CLOUD": "Barbican",
    "REPLICATOR_TEST_BARBICAN_SECRET": "Barbican (the test KEK `deploy/dev/stack up` makes)",
    "REPLICATOR_TEST_STACK_DIR": "the dev stack",
    "REPLICATOR_TEST_AZURITE_BIN": "Azurite (installed by `deploy/dev/stack up`)",
}


def stack_fixture(function=None, **kwargs):
    """``pytest.fixture`` for a fixture that starts or hands out a dev-stack server.

    Every test that uses it, directly or through other fixtures, is marked ``stack``.
    """

    def decorate(f):
        f.needs_stack = True  # read by needs_stack(); functools.wraps (pytest-asyncio's wrappers) keeps it
        return pytest.fixture(f, **kwargs)

    return decorate(function) if function is not None else decorate


def needs_stack(item: pytest.Item) -> bool:
    """Whether a fixture in ``item``'s closure was made with :func:`stack_fixture`."""
    defs = getattr(item, "_fixtureinfo", None)  # pytest's own record of the closure's definitions
    if defs is None:
        return False
    for name in item.fixturenames:
        # The last definition is the one in use; an earlier one only if that one requests its own name.
        for fixturedef in reversed(defs.name2fixturedefs.get(name, ())):
            func = fixturedef.func
            while func is not None:
                if getattr(func, "needs_stack", False):
                    return True
                func = getattr(func, "__wrapped__", None)
            if name not in fixturedef.argnames:
                break
    return False


#: The test running now (set by tests/conftest.py), so stack_env can check its marker.
running: pytest.Item | None = None


def stack_env(var: str) -> str:
    """The value of a dev-stack variable, or a failure naming the server that is missing.

    Under pytest, a test not marked ``stack`` fails here: it reached a server without a
    :func:`stack_fixture`, and ``-m "not stack"`` would have run it without the servers.
    """
    if running is not None and running.get_closest_marker("stack") is None:
        pytest.fail(
            f"{running.nodeid} reaches {_SERVERS.get(var, var)} ({var}) but is not marked `stack`: "
            f"take the server from a fixture made with tests.support.stack.stack_fixture.",
            pytrace=False,
        )
    value = os.environ.get(var)
    if not value:
        pytest.fail(
            f"{_SERVERS.get(var, var)} is not available: {var} is unset. "
            f"Start the servers with `deploy/dev/stack up` and "
            f'`eval "$(deploy/dev/stack env)"`, or run `make test`.',
            pytrace=False,
        )
    return value


_STACK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "deploy", "dev", "stack"
)


def stack_command(*args: str) -> None:
    """Run `deploy/dev/stack ARGS` on the stack the tests use (its state dir from the env)."""
    env = dict(os.environ, DEVSTACK_DIR=stack_env("REPLICATOR_TEST_STACK_DIR"))
    done = subprocess.run([sys.executable, _STACK, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"deploy/dev/stack {' '.join(args)} failed:\n{done.stderr[-2000:]}", pytrace=False)


@contextlib.contextmanager
def server_stopped(name: str) -> Iterator[None]:
    """One dev-stack server stopped (connections refused) for the block; started again after."""
    stack_command("stop", name)
    try:
        yield
    finally:
        stack_command("up")


@contextlib.contextmanager
def server_paused(name: str) -> Iterator[None]:
    """One dev-stack server SIGSTOPped (connections hang) for the block; resumed after."""
    stack_command("pause", name)
    try:
        yield
    finally:
        stack_command("resume", name)
