"""A 3-node cluster on the whole dev stack, made by `deploy/dev/cluster` the way developers make one.

Each test module gets its own cluster: its own PostgreSQL schemas (journal and key store), its own
containers in Azurite and Swift (``Stores``, which also reads them behind the service's back), its
own ports; it is taken down and removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clouds import Stores
from tests.support.pg import connect
from tests.support.stack import stack_env, stack_fixture

CLUSTER = Path(__file__).resolve().parents[2] / "deploy" / "dev" / "cluster"
NODES = 3


@dataclass
class Cluster:
    name: str
    env: dict[str, str]
    port_base: int
    stores: Stores
    token: str = ""

    def try_run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(CLUSTER), *args], env=self.env, capture_output=True, text=True)

    def run(self, *args: str) -> None:
        done = self.try_run(*args)
        if done.returncode != 0:
            pytest.fail(f"deploy/dev/cluster {' '.join(args)} failed:\n{done.stderr[-3000:]}", pytrace=False)

    def url(self, i: int) -> str:
        scheme = "https" if self.env.get("CLUSTER_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.port_base + i}"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(1, NODES + 1)]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kill(self, i: int) -> None:
        self.run("kill", str(i))

    def start(self, i: int) -> None:
        self.run("start", str(i))

    @property
    def dir(self) -> Path:
        return Path(stack_env("REPLICATOR_TEST_STACK_DIR")) / self.name

    async def sql(self, query: str, *args, keys: bool = False):
        """One query on the cluster's journal schema (or its key store's)."""
        schema = self.name.replace("-", "_") + ("_keys" if keys else "")
        conn = await connect(f"{stack_env('REPLICATOR_TEST_PG_DSN')}?schema={schema}")
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def keys(self, fn):
        """``fn(connection)`` on the cluster's key store schema."""
        schema = self.name.replace("-", "_") + "_keys"
        conn = await connect(f"{stack_env('REPLICATOR_TEST_PG_DSN')}?schema={schema}")
        try:
            return await fn(conn)
        finally:
            await conn.close()

    async def drained(self, timeout: float = 90.0) -> None:
        """Wait until no journal row is left: every node's workers have levelled the regions."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (await self.sql("SELECT count(*) AS n FROM tasks"))[0]["n"]:
            assert asyncio.get_running_loop().time() < deadline, "the journal did not drain"
            await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    """More environment for ``deploy/dev/cluster`` (a module overrides it: CLUSTER_TLS_* for HTTPS)."""
    return {}


@stack_fixture(scope="module")
def cluster(cluster_env):
    name = f"cl-{secrets.token_hex(4)}"
    stores = Stores(
        stack_env("REPLICATOR_TEST_AZURE_CONNECTION_STRING"),
        stack_env("REPLICATOR_TEST_CLOUDS_YAML"),
        stack_env("REPLICATOR_TEST_SWIFT_CLOUD"),
        name,
    )
    asyncio.run(stores.create())
    port_base = 18700 + secrets.randbelow(100) * 10
    env = {
        **os.environ,
        "DEVSTACK_DIR": stack_env("REPLICATOR_TEST_STACK_DIR"),
        "CLUSTER_NAME": name,
        "CLUSTER_PORT_BASE": str(port_base),
        "CLUSTER_CA_CONTAINER": stores.azure_container,
        "CLUSTER_JP_CONTAINER": stores.swift_container,
        **cluster_env,
    }
    made = Cluster(name, env, port_base, stores)
    try:
        made.run("up", str(NODES))
        made.token = (made.dir / "token").read_text().strip()
        yield made
    finally:
        made.run("down")
        asyncio.run(_remove(made))
        shutil.rmtree(made.dir, ignore_errors=True)


async def _remove(cluster: Cluster) -> None:
    await cluster.stores.destroy()
    schema = cluster.name.replace("-", "_")
    conn = await connect(stack_env("REPLICATOR_TEST_PG_DSN"))
    try:
        for s in (schema, schema + "_keys"):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
    finally:
        await conn.close()
