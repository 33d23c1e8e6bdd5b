"""Tokens and TLS on three `serve` nodes sharing one PostgreSQL (``deploy/dev/cluster`` with
``CLUSTER_TLS_*``: every node serves HTTPS with a certificate made here, and verifies client
certificates from a CA made here).

* A token made with ``replicator tokens create`` (on one node's config) works on every node, and a
  revocation (run against another node's config) is refused by every node within 5 s: measured from
  the moment the command starts, polling each node meanwhile.
* A principal bound to a client certificate is refused without it on every node, and served with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.certs import Issued, issue, make_ca

from .conftest import NODES, Cluster

REPO = Path(__file__).resolve().parents[2]
PKI: dict[str, Issued] = {}


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("cluster-pki")
    ca = make_ca(d, "Cluster CA")
    PKI.update(ca=ca, server=issue(ca, d, "node", server=True), client=issue(ca, d, "batch"))
    return {
        "CLUSTER_TLS_CERT": str(PKI["server"].cert),
        "CLUSTER_TLS_KEY": str(PKI["server"].key),
        "CLUSTER_TLS_CLIENT_CA": str(ca.cert),
        "CLUSTER_TLS_CA": str(ca.cert),
    }


def tokens(cluster: Cluster, node: int, *args: str) -> subprocess.CompletedProcess:
    """``replicator tokens …`` on node ``node``'s config, with the nodes' environment (password by reference)."""
    node_env = json.loads((cluster.dir / "node.env").read_text())
    config = cluster.dir / f"n{node}" / "replicator.toml"
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "replicator"), "tokens", *args, "--config", str(config)],
        env={**cluster.env, **node_env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def client_context(cert: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(PKI["ca"].cert))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


async def status(http: aiohttp.ClientSession, url: str, token: str, context: ssl.SSLContext) -> tuple[int, str]:
    async with http.get(
        f"{url}/v1/objects/tok?class=account", headers={"Authorization": f"Bearer {token}"}, ssl=context
    ) as r:
        return r.status, await r.text()


async def test_a_revocation_reaches_every_node_within_5_seconds(cluster: Cluster):
    assert all(url.startswith("https://") for url in cluster.urls)
    made = tokens(cluster, 1, "create", "--principal", "batch", "--scope", "meta:account", "--expires-in", "1d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = made.stderr.split("token ", 1)[1].split()[0]
    plain = client_context()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def until(url: str, wanted: int, started: float, limit: float) -> float:
            while True:
                code, body = await status(http, url, token, plain)
                if code == wanted:
                    return time.monotonic() - started
                assert time.monotonic() - started < limit, f"{url} still answers {code} {body} after {limit} s"
                await asyncio.sleep(0.05)

        started = time.monotonic()
        await asyncio.gather(*(until(url, 200, started, 5.0) for url in cluster.urls))

        started = time.monotonic()
        revoke = asyncio.create_task(asyncio.to_thread(tokens, cluster, 2, "revoke", token_id))
        seconds = await asyncio.gather(*(until(url, 401, started, 5.0) for url in cluster.urls))
        done = await revoke
        assert done.returncode == 0, done.stderr
        print(f"revocation refused by every node {max(seconds):.2f} s after `replicator tokens revoke` started")
        for url in cluster.urls:
            code, body = await status(http, url, token, plain)
            assert code == 401 and f"{token_id} (principal 'batch') was revoked at" in json.loads(body)["message"]
            assert token not in body


async def test_a_principal_bound_to_a_client_certificate_needs_it_on_every_node(cluster: Cluster):
    subject = PKI["client"].certificate.subject.rfc4514_string()
    made = tokens(cluster, 3, "create", "--principal", "bound", "--scope", "meta:account", "--client-subject", subject)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        deadline = time.monotonic() + 5
        for url in cluster.urls:
            while (answer := await status(http, url, token, client_context(PKI["client"])))[0] != 200:
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(0.05)
            code, body = await status(http, url, token, client_context())
            assert code == 401 and "bound to a client certificate" in body
    assert NODES == len(cluster.urls)
    assert os.environ.get("CLUSTER_TLS_CERT") is None  # the TLS is this module's only
