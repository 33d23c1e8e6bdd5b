"""The dev stack's servers, as tests reach them: required, never optional.

A suite that needs Azurite, Swift or PostgreSQL reads its address from the
variables `deploy/dev/stack env` prints. When one is missing the test fails
and names the server: a missing server must never look like a passing run.
"""

import os

import pytest

_SERVERS = {
    "REPLICATOR_TEST_AZURE_CONNECTION_STRING": "Azurite",
    "REPLICATOR_TEST_CLOUDS_YAML": "Keystone + Swift",
    "REPLICATOR_TEST_SWIFT_CLOUD": "Keystone + Swift",
    "REPLICATOR_TEST_PG_DSN": "PostgreSQL",
}


def stack_env(var: str) -> str:
    """The value of a dev-stack variable, or a failure naming the server that is missing."""
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{_SERVERS.get(var, var)} is not available: {var} is unset. "
                    f"Start the servers with `deploy/dev/stack up` and "
                    f"`eval \"$(deploy/dev/stack env)\"`, or run `make test`.", pytrace=False)
    return value
