"""``replicator serve --processes N``: N processes on one port, safe through the cluster's shared state.

A real ``serve --processes 2`` on the embedded default's two local regions,
with the journal and the key records in a schema of its own on the dev
stack's PostgreSQL (passwords by reference). The processes are nodes
``<node_id>-1`` and ``-2``: their version stamps show both took requests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from replicator.embedded import CONFIG_NAME, ensure
from replicator.hlc import Version
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import stack_fixture

REPLICATOR = str(Path(sys.executable).parent / "replicator")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def by_reference(url: str, env: str) -> str:
    return url.replace(f":{urlsplit(url).password}@", "@") + f"&password_env={env}"


@stack_fixture
def site(tmp_path):
    """The embedded default with a PostgreSQL journal and key store; the environment holding their passwords."""
    journal, store = fresh_url("procj"), fresh_url("procs")
    var = tmp_path / "var"
    ensure(var)
    config = var / CONFIG_NAME
    text = config.read_text()
    text = text.replace('journal = "sqlite:///journal.sqlite3"', f'journal = "{by_reference(journal, "TEST_J_PW")}"')
    text = text.replace('keyring = "keyring.json"', f'store = "{by_reference(store, "TEST_S_PW")}"')
    config.write_text(text)
    env = dict(os.environ, TEST_J_PW=urlsplit(journal).password or "", TEST_S_PW=urlsplit(store).password or "")
    yield var, env
    for url in (journal, store):
        asyncio.run(drop_schema(url))


async def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited {proc.returncode}: {log.read_text()[-3000:]}"
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"serve --processes did not become ready: {log.read_text()[-3000:]}")


async def test_two_processes_share_the_port_and_the_cluster_state(site, tmp_path):
    var, env = site
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [REPLICATOR, "serve", "--var", str(var), "--port", str(port), "--processes", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc, log)
        auth = {"Authorization": f"Bearer {(var / 'dev-token').read_text().strip()}"}
        nodes: set[str] = set()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:

            async def put(i: int) -> str:
                async with http.put(f"{url}/v1/objects/ada/account/n{i}", data=f"body {i}".encode(), headers=auth) as r:
                    assert r.status == 201, await r.text()
                    return (await r.json())["version"]

            for version in await asyncio.gather(*(put(i) for i in range(60))):
                nodes.add(Version.parse(version).node)

            # A create race across the processes: exactly one wins (the name lock is in PostgreSQL).
            async def create() -> int:
                async with http.put(
                    f"{url}/v1/objects/ada/account/race", data=b"x", headers={**auth, "If-None-Match": "*"}
                ) as r:
                    return r.status

            statuses = await asyncio.gather(*(create() for _ in range(10)))
            assert sorted(statuses) == [201] + [412] * 9

            for i in (0, 59):
                async with http.get(
                    f"{url}/v1/objects/ada/account/n{i}", headers={**auth, "X-Purpose": "service"}
                ) as r:
                    assert await r.read() == f"body {i}".encode()
        assert nodes == {"dev-1", "dev-2"}, nodes  # the kernel spread the connections over both
        assert (var / "audit-1.log").exists() and (var / "audit-2.log").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]


def test_several_processes_need_a_shared_journal_and_key_store(tmp_path):
    var = tmp_path / "var"
    done = subprocess.run(
        [REPLICATOR, "serve", "--var", str(var), "--port", str(free_port()), "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "several processes need the shared state of a cluster" in done.stderr
