"""Three `serve` nodes on the whole dev stack: any one can go, nothing acknowledged is lost.

* Creates racing through every node: exactly one wins.
* An erasure through one node: the others serve none of that customer's plaintext at once.
* Writes and deletes through every node while nodes are SIGKILLed and restarted, with a ledger of
  what was acknowledged: no acknowledged write lost, no delete resurrected, both regions level.
* A second node with a taken node id refuses to start, naming it.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from replicator.layout import is_kept_version, parse_path
from tests.support.pg import backup_tables, restore_tables
from tests.support.served import free_port
from tests.support.stack import server_stopped

from .conftest import NODES, Cluster

TIMEOUT = aiohttp.ClientTimeout(total=30)


async def _put(http, url, auth, path, body, **headers):
    async with http.put(f"{url}/v1/objects/{path}", data=body, headers={**auth, **headers}) as r:
        return r.status, await r.json(content_type=None)


async def _get(http, url, auth, path):
    async with http.get(f"{url}/v1/objects/{path}", headers={**auth, "X-Purpose": "service"}) as r:
        return r.status, await r.read()


async def test_creates_racing_through_every_node_make_exactly_one_winner(cluster: Cluster):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for n in range(10):
            path = f"racer/account/create-{n}"
            outcomes = await asyncio.gather(
                *(
                    _put(http, url, cluster.auth, path, f"from node {i}".encode(), **{"If-None-Match": "*"})
                    for i, url in enumerate(cluster.urls, 1)
                )
            )
            statuses = sorted(status for status, _ in outcomes)
            assert statuses == [201] + [412] * (NODES - 1), (path, outcomes)
            winner = next(i for i, (status, _) in enumerate(outcomes, 1) if status == 201)
            for url in cluster.urls:  # every node serves the one acknowledged create
                assert await _get(http, url, cluster.auth, path) == (200, f"from node {winner}".encode())


async def test_overwrites_racing_through_every_node_converge_on_the_highest_version(cluster: Cluster):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for n in range(5):
            path = f"racer/account/overwrite-{n}"
            outcomes = await asyncio.gather(
                *(
                    _put(http, url, cluster.auth, path, f"write {k} via node {i}".encode())
                    for k in range(3)
                    for i, url in enumerate(cluster.urls, 1)
                )
            )
            assert all(status == 201 for status, _ in outcomes), outcomes
            versions = sorted(body["version"] for _, body in outcomes)
            assert len(set(versions)) == len(versions)  # every write its own version, whatever node
            highest = versions[-1]
            winner = next(body for _, body in outcomes if body["version"] == highest)
            for url in cluster.urls:
                async with http.head(f"{url}/v1/objects/{path}", headers=cluster.auth) as r:
                    assert r.headers["X-Version"] == highest, (path, r.headers.get("X-Version"), highest)
            assert winner["replication"] == "complete"
    await cluster.drained()
    await _assert_level(cluster, [])


async def test_an_erasure_through_one_node_reaches_the_others_at_once(cluster: Cluster):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        secret = b"erin's medical history"
        paths = [f"erin/account/doc-{n}" for n in range(5)]
        for path in paths:
            assert (await _put(http, cluster.url(1), cluster.auth, path, secret))[0] == 201
        for url in cluster.urls:  # every node has read (and holds in memory) erin's key
            assert await _get(http, url, cluster.auth, paths[0]) == (200, secret)
        async with http.delete(f"{cluster.url(1)}/v1/customers/erin", headers=cluster.auth) as r:
            assert r.status == 202
        reads = await asyncio.gather(
            *(_get(http, url, cluster.auth, path) for url in cluster.urls[1:] for path in paths for _ in range(4))
        )
        assert len(reads) == 40
        assert all(status in (404, 410) and secret not in body for status, body in reads), reads


async def test_a_restored_key_store_backup_does_not_undo_an_erasure(cluster: Cluster):
    """Back up the key store, erase, restore the backup, start a node: the customer stays erased."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        secret = b"frank's bank details"
        assert (await _put(http, cluster.url(1), cluster.auth, "frank/account/card", secret))[0] == 201
        backup = await cluster.keys(backup_tables)
        async with http.delete(f"{cluster.url(2)}/v1/customers/frank", headers=cluster.auth) as r:
            assert r.status == 202
            erasure = (await r.json())["erasure"]
        [[tag]] = await cluster.sql("SELECT customer_tag FROM erasures WHERE id = $1", erasure)
        await cluster.keys(lambda conn: restore_tables(conn, backup))  # the operator restores last night's
        rows = await cluster.sql("SELECT erased_at FROM key_customers WHERE customer_tag = $1", tag, keys=True)
        assert rows[0]["erased_at"] is None  # the restore brought frank's key back
        await asyncio.to_thread(cluster.kill, 3)
        await asyncio.to_thread(cluster.start, 3)  # re-applies the erasure ledger before it is ready
        rows = await cluster.sql("SELECT erased_at, dek_id FROM key_customers WHERE customer_tag = $1", tag, keys=True)
        assert rows[0]["erased_at"] is not None and rows[0]["dek_id"] is None
        for url in cluster.urls:
            status, body = await _get(http, url, cluster.auth, "frank/account/card")
            assert status in (404, 410) and secret not in body
            assert (await _put(http, url, cluster.auth, "frank/account/card", b"again"))[0] == 410
    audit = [json.loads(line) for line in (cluster.dir / "n3" / "audit.log").read_text().splitlines()]
    assert [(r["outcome"], r["customer_tag"]) for r in audit if r.get("principal") == "erasure-ledger"] == [
        ("reapplied", tag)
    ]


async def test_with_barbican_stopped_no_node_starts_and_running_nodes_keep_serving(cluster: Cluster):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        assert (await _put(http, cluster.url(1), cluster.auth, "kek/account/doc", b"before the outage"))[0] == 201
        await asyncio.to_thread(cluster.kill, 3)
        with server_stopped("barbican"):
            started = await asyncio.to_thread(cluster.try_run, "start", "3")
            assert started.returncode != 0
            assert (
                "cannot start: the keyring did not open: Barbican secret"
                in (cluster.dir / "n3" / "node.log").read_text()
            )
            for url in cluster.urls[:2]:  # the KEK is in their memory: they go on
                assert await _get(http, url, cluster.auth, "kek/account/doc") == (200, b"before the outage")
                assert (await _put(http, url, cluster.auth, f"kek/account/during-{url[-4:]}", b"x"))[0] == 201
                async with http.get(f"{url}/readyz") as r:
                    ready = await r.json()
                assert r.status == 200 and ready["status"] == "degraded", ready
                assert ready["checks"]["kek_service"].startswith("unreachable"), ready
        await asyncio.to_thread(cluster.start, 3)  # Barbican is back: node 3 starts
        assert await _get(http, cluster.url(3), cluster.auth, "kek/account/doc") == (200, b"before the outage")


# -- kills under load --------------------------------------------------------------------------


@dataclass
class History:
    """One name's operations in the order they were sent, and what each got back."""

    ops: list[tuple[str, int, str]] = field(default_factory=list)  # (write|delete, seq, ack|fail|unknown)
    acked: dict[int, str] = field(default_factory=dict)  # seq -> version acknowledged


async def _workload(cluster: Cluster, name: str, history: History, stop: asyncio.Event) -> None:
    path = f"kilo/account/{name}"
    seq = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        while not stop.is_set():
            seq += 1
            url = random.choice(cluster.urls)
            op = "delete" if seq % 4 == 0 else "write"
            try:
                if op == "write":
                    status, body = await _put(http, url, cluster.auth, path, f"{name}:{seq}".encode())
                    ok = status == 201
                else:
                    async with http.delete(f"{url}/v1/objects/{path}", headers=cluster.auth) as r:
                        status, body = r.status, await r.json(content_type=None)
                    ok = status == 200
                outcome = "ack" if ok else ("fail" if status < 500 else "unknown")
                if ok:
                    history.acked[seq] = body["version"]
            except (TimeoutError, aiohttp.ClientError):
                outcome = "unknown"  # the node died with the request: it may or may not have been done
                await asyncio.sleep(0.05)
            history.ops.append((op, seq, outcome))


async def test_nothing_acknowledged_is_lost_while_nodes_are_killed(cluster: Cluster):
    names = [f"obj-{n:02d}" for n in range(24)]
    histories = {name: History() for name in names}
    stop = asyncio.Event()
    load = [asyncio.ensure_future(_workload(cluster, n, histories[n], stop)) for n in names]
    kills = 0
    started = time.monotonic()
    try:
        while kills < 21:
            await asyncio.sleep(random.uniform(0.3, 0.8))
            victim = random.randint(1, NODES)
            await asyncio.to_thread(cluster.kill, victim)
            kills += 1
            await asyncio.to_thread(cluster.start, victim)
    finally:
        stop.set()
        await asyncio.gather(*load)
    elapsed = time.monotonic() - started
    await cluster.drained()

    acked = sum(len(h.acked) for h in histories.values())
    unknown = sum(1 for h in histories.values() for _, _, o in h.ops if o == "unknown")
    assert kills >= 20 and acked > 200, (kills, acked)
    lost = resurrected = 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        for name, history in histories.items():
            path = f"kilo/account/{name}"
            last_acked = max(history.acked)
            # What may be there: the last acknowledged operation, or any later one whose answer was lost.
            allowed = [
                (op, seq) for op, seq, o in history.ops if seq == last_acked or (seq > last_acked and o == "unknown")
            ]
            status, body = await _get(http, random.choice(cluster.urls), cluster.auth, path)
            if status == 200:
                seq = int(body.decode().rsplit(":", 1)[1])
                if ("write", seq) not in allowed:
                    lost += 1
            elif not any(op == "delete" for op, _ in allowed):
                lost += 1  # an acknowledged write is gone
            elif status != 404:
                pytest.fail(f"{path}: {status} {body[:200]!r}")
            if history.ops[-1][0] == "delete" and history.ops[-1][2] == "ack" and status == 200:
                resurrected += 1
    assert (lost, resurrected) == (0, 0), (lost, resurrected)
    await _assert_level(cluster, names)
    print(
        f"\ncluster kills: {kills} SIGKILLs in {elapsed:.0f} s, {acked} acknowledged operations, "
        f"{unknown} unanswered; lost {lost}, resurrected {resurrected}"
    )


async def _assert_level(cluster: Cluster, names: list[str]) -> None:
    """Both regions hold the same version of every name (straight from the stores)."""
    stores = cluster.stores
    every = set(await stores.azure_names("v1/")) | set(await stores.swift_names(prefix="v1/"))
    for stored in every:
        parse_path(stored)  # only objects (and kept versions) the service made
    # Objects are level. A kept version a SIGKILL left in one region only (kept, then killed before its
    # journal row) is the reconciler's to copy: backups of backups, not acknowledged writes.
    azure = {p for p in await stores.azure_names("v1/") if not is_kept_version(p)}
    swift = {p for p in await stores.swift_names(prefix="v1/") if not is_kept_version(p)}
    assert azure == swift and len(azure) >= len(names) - 1
    for stored in azure:
        _, swift_meta = await stores.swift_head(stored)
        assert (await stores.azure_head(stored))["version"] == swift_meta["version"], stored


# -- node ids ------------------------------------------------------------------------------------


def test_a_second_node_with_a_taken_id_refuses_to_start(cluster: Cluster, tmp_path):
    node_env = json.loads((cluster.dir / "node.env").read_text())
    config = tmp_path / "replicator.toml"  # n1's config on another host: its own audit log
    config.write_text((cluster.dir / "n1" / "replicator.toml").read_text())
    done = subprocess.run(
        [str(Path(sys.executable).parent / "replicator"), "serve", "--config", str(config), "--port", str(free_port())],
        env={**cluster.env, **node_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "node id 'n1' is taken by a running node (host" in done.stderr, done.stderr[-2000:]
