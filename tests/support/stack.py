"""The dev stack's servers, as tests reach them: required, never optional.

A suite that needs Azurite, Swift or PostgreSQL reads its address from the
variables `deploy/dev/stack env` prints. When one is missing the test fails
and names the server: a missing server must never look like a passing run.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

_SERVERS = {
    "REPLICATOR_TEST_AZURE_CONNECTION_STRING": "Azurite",
    "REPLICATOR_TEST_CLOUDS_YAML": "Keystone + Swift",
    "REPLICATOR_TEST_SWIFT_CLOUD": "Keystone + Swift",
    "REPLICATOR_TEST_PG_DSN": "PostgreSQL",
    "REPLICATOR_TEST_STACK_DIR": "the dev stack",
}


def stack_env(var: str) -> str:
    """The value of a dev-stack variable, or a failure naming the server that is missing."""
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{_SERVERS.get(var, var)} is not available: {var} is unset. "
                    f"Start the servers with `deploy/dev/stack up` and "
                    f"`eval \"$(deploy/dev/stack env)\"`, or run `make test`.", pytrace=False)
    return value


_STACK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "deploy", "dev", "stack")


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
