"""Region faults against the real dev stack: what the API answers, that nothing acknowledged is lost,
and that the region is brought level when it returns.

Theory of operation
    Each test runs the service in-process (aiohttp ``TestServer``) with
    region ``ca`` on Azurite and region ``jp`` on Swift behind Keystone v3,
    each on containers made for the test (``tests.support.clouds``). A
    fault is put on one real server of the stack the tests run against:

    ============================  ============================================================
    Azurite stopped               ``server_stopped("azurite")``: connections refused
    Swift proxy paused            ``server_paused("swift-proxy")``: SIGSTOP, connections hang
    Keystone down, token valid    ``server_stopped("keystone")``; Swift's authtoken cache
                                  (memcached) still vouches for the driver's token
    Keystone down, token expired  the driver's token revoked through Keystone's API and past
                                  its expiry, Keystone stopped: the driver's re-authentication
                                  through keystoneauth fails to connect
    500s                          ``ca`` through :class:`~tests.support.errorproxy.ErrorProxy`,
                                  a loopback HTTP proxy that answers every request with 500
    corrupted body                bytes flipped in a stored object through the store's own API
    ============================  ============================================================

    During an outage the same mix of requests runs (:func:`ride_out`): new
    names, an overwrite, a 2 MiB streamed body (blocks and segments), a
    delete, then reads of everything acknowledged, a HEAD, a listing and
    ``/readyz``. Every request is timed against a deadline computed from the
    config's ``[limits]`` (:class:`Deadline`); a request that hangs fails the
    test instead of stalling the suite. After the fault, the journal's
    workers must bring the region level, and both stores are read behind the
    service's back: every acknowledged write at its acknowledged version,
    byte-identical ciphertext, every acknowledged delete a tombstone in both.

The servers are required (``tests.support.stack.stack_env``): without them the tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientPayloadError
from aiohttp.test_utils import TestClient, TestServer
from azure.core.exceptions import ResourceNotFoundError

from keys import KeyFile, generate_token
from replicator.config import load_config
from replicator.embedded import all_scopes, config_text
from replicator.http import handlers as api_mod
from replicator.http.app import build_app
from replicator.layout import ObjectPath
from tests.support.clouds import CA_CONN_VAR, MiB, Stores, regions_toml
from tests.support.errorproxy import ErrorProxy
from tests.support.eventually import eventually
from tests.support.stack import server_paused, server_stopped

REGIONS = ("ca", "jp")


# -- deadlines ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """How long a request may take with one region failing, from the config's ``[limits]``."""

    timeout: float  # request_timeout: one attempt of one region call
    attempts: int  # retry_attempts

    @property
    def region_call(self) -> float:
        # Each attempt: its deadline, plus 1 s per MiB for a segment upload (1 MiB segments here);
        # between attempts the retry policy's backoff (0.2 s doubling, well under 0.5 s for 2-3 tries).
        return self.attempts * (self.timeout + 1.0) + 0.5 * (self.attempts - 1)

    @property
    def request(self) -> float:
        # A request makes at most two region calls one after the other (look-up, then put or get).
        return 2 * self.region_call + 2.0


@dataclass
class Figures:
    """What one fault cost, for docs/reliability.md."""

    fault: str
    requests: int = 0
    slowest: dict[str, float] = field(default_factory=dict)  # request kind -> seconds
    converged_in: float = 0.0

    def note(self, kind: str, seconds: float) -> None:
        self.requests += 1
        self.slowest[kind] = max(self.slowest.get(kind, 0.0), round(seconds, 2))

    def report(self) -> None:
        print(f"\nFIGURES {json.dumps(vars(self))}")


async def timed(figures: Figures, kind: str, deadline: float, call: Awaitable):
    """Await ``call``; fail if it takes longer than ``deadline`` (and do not wait for a hang)."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(call, deadline + 10)
    except TimeoutError:
        pytest.fail(f"{kind} still had no answer after {deadline + 10:.0f}s (deadline {deadline:.1f}s)")
    took = time.monotonic() - started
    assert took <= deadline, f"{kind} took {took:.1f}s, past its deadline of {deadline:.1f}s"
    figures.note(kind, took)
    return result


# -- the service over the two stores ---------------------------------------------------------------


def uid() -> str:
    """8 random characters (base32: never a run of digits that could read as a SIN)."""
    return base64.b32encode(os.urandom(5)).decode().lower()


@dataclass
class Service:
    client: TestClient
    app: object
    stores: Stores
    auth: dict[str, str]
    journal: Path
    deadline: Deadline

    @property
    def regions(self):
        return self.app[api_mod.SERVICE].regions

    def path(self, customer: str, name: str) -> str:
        return str(ObjectPath.of(self.app[api_mod.SERVICE].tagger, customer, "account", name))

    async def put(self, customer: str, name: str, body, **headers) -> tuple[int, dict]:
        resp = await self.client.put(
            f"/v1/objects/{customer}/account/{name}", data=body, headers={**self.auth, **headers}
        )
        return resp.status, await resp.json()

    async def get(self, customer: str, name: str) -> tuple[int, bytes, str | None]:
        resp = await self.client.get(
            f"/v1/objects/{customer}/account/{name}", headers={**self.auth, "X-Purpose": "service"}
        )
        return resp.status, await resp.read(), resp.headers.get("X-Version")

    async def head(self, customer: str, name: str) -> tuple[int, dict[str, str]]:
        resp = await self.client.head(f"/v1/objects/{customer}/account/{name}", headers=self.auth)
        return resp.status, dict(resp.headers)

    async def delete(self, customer: str, name: str) -> tuple[int, dict]:
        resp = await self.client.delete(f"/v1/objects/{customer}/account/{name}", headers=self.auth)
        return resp.status, await resp.json()

    async def listing(self, customer: str) -> tuple[int, dict]:
        resp = await self.client.get(
            f"/v1/objects/{customer}", params={"class": "account", "limit": "1000"}, headers=self.auth
        )
        return resp.status, await resp.json()

    async def ready(self) -> tuple[int, dict]:
        resp = await self.client.get("/readyz")
        return resp.status, await resp.json()

    def journal_rows(self) -> list[dict]:
        """The journal's pending rows, read behind the service's back (read-only)."""
        db = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT kind, name, src, dst, attempts, last_error FROM tasks")]
        finally:
            db.close()


@contextlib.asynccontextmanager
async def serve(directory: Path, stores: Stores, *, timeout: float = 2.0, attempts: int = 2) -> AsyncIterator[Service]:
    """The service on ``stores``, read preference ``ca``; the ``ca`` credential from ``CA_CONN_VAR``."""
    directory.mkdir(parents=True, exist_ok=True)
    KeyFile.generate(directory / "kek.key")
    token, token_hash = generate_token()
    (directory / "replicator.toml").write_text(
        config_text(
            "fault",
            regions_toml(stores),
            {"all": (token_hash, all_scopes())},
            sections=f"[limits]\nrequest_timeout = {timeout}\nretry_attempts = {attempts}\n\n",
        )
    )
    config = load_config(directory / "replicator.toml")
    app = build_app(config, workers_idle_wait=0.05)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Service(
            client,
            app,
            stores,
            {"Authorization": f"Bearer {token}"},
            Path(config.journal.removeprefix("sqlite:///")),
            Deadline(timeout, attempts),
        )
    finally:
        await client.close()


@pytest.fixture
async def proxy(stores, monkeypatch):
    """An :class:`ErrorProxy` in front of Azurite; the service's ``ca`` goes through it (the stores do not)."""
    conn = stores.azure_conn
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    endpoint = parts["BlobEndpoint"].rstrip("/")
    origin, account = endpoint.rsplit("/", 1)
    px = await ErrorProxy(origin).start()
    monkeypatch.setenv(CA_CONN_VAR, conn.replace(parts["BlobEndpoint"], f"http://127.0.0.1:{px.port}/{account}"))
    try:
        yield px
    finally:
        await px.close()


@contextlib.asynccontextmanager
async def off_loop(cm: contextlib.AbstractContextManager) -> AsyncIterator[None]:
    """A blocking context manager (``deploy/dev/stack stop|up`` runs a subprocess) entered off the event loop,
    so the service keeps running meanwhile."""
    await asyncio.to_thread(cm.__enter__)
    try:
        yield
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


# -- one outage, the same requests every time --------------------------------------------------------


async def chunked(data: bytes, size: int = 256 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


Acked = dict[str, tuple[bytes | None, str]]  # name -> (plaintext, or None for a delete; acknowledged version)


async def ride_out(
    svc: Service,
    fault: Callable[[], contextlib.AbstractAsyncContextManager],
    *,
    down: str | None,
    figures: Figures,
    during: Callable[[], Awaitable[None]] | None = None,
) -> Acked:
    """Writes before the fault, the mix of requests during it, then convergence and the stores checked.

    ``down``: the region the fault takes out, or None when the service should not notice the fault.
    """
    customer, acked, limit = f"fault-{uid()}", {}, svc.deadline.request
    for i in range(3):
        status, result = await svc.put(customer, f"before-{i}", b"before %d" % i)
        assert status == 201 and result["replication"] == "complete", result
        acked[f"before-{i}"] = (b"before %d" % i, result["version"])
    stored = {r: ("pending" if r == down else "stored") for r in REGIONS}

    async def put(name: str, data: bytes, body=None):
        status, result = await timed(figures, "put", limit, svc.put(customer, name, body or data))
        assert status == 201, (name, status, result)
        assert result["replication"] == ("degraded" if down else "complete") and result["regions"] == stored, result
        acked[name] = (data, result["version"])

    async def delete(name: str):
        status, result = await timed(figures, "delete", limit, svc.delete(customer, name))
        assert status == 200, (name, status, result)
        assert result["regions"] == {r: ("pending" if r == down else "deleted") for r in REGIONS}, result
        acked[name] = (None, result["version"])

    async def read(name: str, data: bytes | None, version: str):
        status, body, got = await timed(figures, "get", limit, svc.get(customer, name))
        if data is None:
            assert status == 404, (name, status)
        else:
            assert (status, body, got) == (200, data, version), (name, status, body[:200])

    async def head():
        status, headers = await timed(figures, "head", limit, svc.head(customer, "during-0"))
        assert status == 200
        if down:
            assert headers["X-Replication"] == "pending" and f"{down}=unavailable" in headers["X-Replication-Regions"]
        else:
            assert headers["X-Replication"] == "complete", headers

    async def listing():
        status, result = await timed(figures, "list", limit, svc.listing(customer))
        assert status == 200, result
        assert sorted(o["name"] for o in result["objects"]) == sorted(n for n, (d, _) in acked.items() if d is not None)

    async def ready():
        status, result = await timed(figures, "readyz", limit, svc.ready())
        assert status == 200 and result["status"] == ("degraded" if down else "ok"), result
        if down:
            assert result["checks"][f"region:{down}"].startswith("unavailable"), result

    big = os.urandom(2 * MiB + 5)
    async with fault():
        # All at once, so a hanging region costs its deadline once, not once per request.
        await asyncio.gather(
            *(put(f"during-{i}", b"during %d" % i) for i in range(3)),
            put("before-0", b"overwritten during the fault"),
            put("big", big, chunked(big)),
            delete("before-1"),
        )
        await asyncio.gather(*(read(n, d, v) for n, (d, v) in acked.items()), head(), listing(), ready())
        if during is not None:
            await during()
    started = time.monotonic()
    await wait_level(svc, customer, acked)
    figures.converged_in = round(time.monotonic() - started, 2)
    await check_both_stores(svc, customer, acked)
    await asyncio.gather(*(read(n, d, v) for n, (d, v) in acked.items()))
    return acked


async def wait_level(svc: Service, customer: str, acked: Acked, timeout: float = 60) -> None:
    """Until HEAD says ``complete`` for every live name and both stores hold every tombstone."""

    async def tombstone_in_both(name: str, version: str) -> bool:
        path = svc.path(customer, name)
        try:
            return (
                (await svc.stores.azure_head(path))["version"]
                == version
                == (await svc.stores.swift_head(path))[1]["version"]
            )
        except (ResourceNotFoundError, AssertionError):
            return False

    async def level() -> bool:
        heads = await asyncio.gather(*(svc.head(customer, n) for n, (d, _) in acked.items() if d is not None))
        tombs = await asyncio.gather(*(tombstone_in_both(n, v) for n, (d, v) in acked.items() if d is None))
        return all(s == 200 and h["X-Replication"] == "complete" for s, h in heads) and all(tombs)

    await eventually(level, timeout=timeout, interval=0.25, what="the workers bringing the region level")


async def check_both_stores(svc: Service, customer: str, acked: Acked) -> None:
    await svc.stores.check_level({svc.path(customer, name): write for name, write in acked.items()})


# -- the faults ---------------------------------------------------------------------------------------


async def test_azurite_stopped(tmp_path, stores):
    figures = Figures("azurite stopped")
    async with serve(tmp_path / "svc", stores) as svc:
        await ride_out(svc, lambda: off_loop(server_stopped("azurite")), down="ca", figures=figures)
    figures.report()


async def test_swift_proxy_paused(tmp_path, stores):
    figures = Figures("swift proxy paused (SIGSTOP)")
    async with serve(tmp_path / "svc", stores) as svc:
        await ride_out(svc, lambda: off_loop(server_paused("swift-proxy")), down="jp", figures=figures)
        # Nothing answered: every request gave up at its deadline, none returned early by luck.
        assert max(figures.slowest.values()) >= svc.deadline.timeout, figures
    figures.report()


async def test_keystone_down_while_the_token_is_valid(tmp_path, stores):
    figures = Figures("keystone stopped, token still valid")
    async with serve(tmp_path / "svc", stores) as svc:
        # The driver already holds a token, and Swift's authtoken cache vouches for it: nothing needs Keystone.
        await ride_out(svc, lambda: off_loop(server_stopped("keystone")), down=None, figures=figures)
        assert max(figures.slowest.values()) < svc.deadline.timeout, figures
    figures.report()


async def keystone(stores: Stores, method: str, token: str) -> int:
    """``method`` /v3/auth/tokens about ``token`` (GET validates, DELETE revokes), as the stores' own user."""
    resp = await asyncio.to_thread(
        lambda: stores.swift.conn.session.request(
            "/auth/tokens",
            method,
            headers={"X-Subject-Token": token},
            raise_exc=False,
            endpoint_filter={"service_type": "identity", "interface": "public"},
        )
    )
    return resp.status_code


async def test_keystone_down_after_the_token_expired(tmp_path, stores):
    """The driver's token dies while Keystone is down: revoked through Keystone's API, and past its expiry.

    Expiry is the driver's own clock (``_expires``, which it copied from the
    token Keystone issued) moved to now, as if the token's lifetime had run
    out; nothing is mocked: the driver then asks keystoneauth for a new token
    (``invalidate`` and ``get_access``), and keystoneauth really tries to
    reach the stopped Keystone. When Keystone is back, the driver holds a new
    token and the revoked one is never used again.
    """
    figures = Figures("keystone stopped, token expired")
    async with serve(tmp_path / "svc", stores) as svc:
        jp = svc.regions["jp"]  # the SwiftRegion itself (observed through its portable layer, not wrapped)
        assert (await svc.put("warm-up", "x", b"x"))[0] == 201  # the driver authenticates
        token = jp._token
        assert await keystone(stores, "DELETE", token) == 204

        @contextlib.asynccontextmanager
        async def fault():
            async with off_loop(server_stopped("keystone")):
                jp._expires = time.time()
                yield

        async def reauth_failed():
            # The journal's rows for jp failed on keystoneauth's attempt to get a new token.
            async def seen():
                return [
                    r
                    for r in svc.journal_rows()
                    if r["dst"] == "jp" and "ConnectFailure" in r["last_error"] and "/v3/auth/tokens" in r["last_error"]
                ]

            try:
                rows = await eventually(seen, timeout=30, interval=0.2, what="a jp row failing on re-authentication")
            except AssertionError:
                raise AssertionError(f"no jp row failed on re-authentication: {svc.journal_rows()}") from None
            assert token not in json.dumps(rows)

        await ride_out(svc, fault, down="jp", figures=figures, during=reauth_failed)
        assert jp._token != token
        assert await keystone(stores, "GET", token) == 404  # revoked: the old token is dead for good
    figures.report()


async def test_a_region_answering_500(tmp_path, stores, proxy):
    figures = Figures("azure answering 500 (proxy)")

    @contextlib.asynccontextmanager
    async def fault():
        proxy.failing = True
        try:
            yield
        finally:
            proxy.failing = False

    async with serve(tmp_path / "svc", stores) as svc:
        await ride_out(svc, fault, down="ca", figures=figures)
    assert proxy.answered_500 > 0 and proxy.passed > 0
    print(f"\nproxy: {proxy.answered_500} answers of 500, {proxy.passed} passed through")
    figures.report()


# -- corrupted bytes -------------------------------------------------------------------------------------


def flipped(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


async def corrupt_azure(stores: Stores, path: str, at: int) -> None:
    """Flip one bit of a stored blob with the Azure SDK, keeping its metadata (and so its recorded digest)."""
    async with stores.azure() as svc:
        blob = svc.get_blob_client(stores.azure_container, path)
        props = await blob.get_blob_properties()
        data = await (await blob.download_blob()).readall()
        await blob.upload_blob(flipped(data, at % len(data)), overwrite=True, metadata=props.metadata)


async def corrupt_swift(stores: Stores, path: str, at: int) -> None:
    """Flip one bit of a stored (single-segment) Swift object, keeping its Content-Type (digest, metadata)."""
    headers, _ = await stores.swift_head(path)
    assert headers.get("X-Static-Large-Object") is None
    data = await stores.swift_body(path)
    status, _, _ = await stores.swift.call(
        "PUT",
        stores.swift_container,
        path,
        data=flipped(data, at % len(data)),
        headers={"Content-Type": headers["Content-Type"]},
    )
    assert status == 201, status


async def test_a_corrupted_copy_is_never_served_and_is_repaired(tmp_path, stores, proxy):
    figures = Figures("corrupted body")
    customer = f"corrupt-{uid()}"
    async with serve(tmp_path / "svc", stores) as svc:
        limit = svc.deadline.request
        small = {f"small-{i}": b"small object %d " % i * 50 for i in range(4)}
        big = os.urandom(3 * MiB + 77)
        acked = {}
        for name, data in [*small.items(), ("big", big)]:
            status, result = await svc.put(customer, name, data)
            assert status == 201 and result["replication"] == "complete", result
            acked[name] = (data, result["version"])

        async def same_in_both(name: str) -> bool:
            path = svc.path(customer, name)
            return await stores.azure_body(path) == await stores.swift_body(path)

        # 1. The preferred region (ca) holds flipped bits: in the envelope header, the first segment, the
        #    middle, the GCM tag at the end. Reads are served from jp, whole and right; ca is repaired.
        for name, at in zip(small, (0, 40, 300, -1)):
            await corrupt_azure(stores, svc.path(customer, name), at)
        for name in small:
            status, body, version = await timed(figures, "get", limit, svc.get(customer, name))
            assert (status, body, version) == (200, *acked[name]), (name, status, body[:100])
        for name in small:
            await eventually(lambda name=name: same_in_both(name), timeout=30, what=f"ca's copy of {name} repaired")

        # 2. A large object corrupt past its first segment: the plaintext is already flowing when the bad
        #    segment arrives, so the client sees a broken transfer, never a clean short or wrong body.
        #    The next read, after the repair, is whole.
        await corrupt_azure(stores, svc.path(customer, "big"), 3 * MiB)
        resp = await svc.client.get(f"/v1/objects/{customer}/account/big", headers={**svc.auth, "X-Purpose": "service"})
        assert resp.status == 200
        with pytest.raises(ClientPayloadError):
            await resp.read()
        await eventually(lambda: same_in_both("big"), timeout=30, what="ca's copy of big repaired")
        status, body, version = await timed(figures, "get", limit, svc.get(customer, "big"))
        assert (status, body == big, version) == (200, True, acked["big"][1])

        # 3. jp's copy is corrupt while ca answers 500: no good copy answers, so 503, never the bad bytes.
        #    When ca returns, the read is whole again, and jp's copy is repaired from ca.
        await corrupt_swift(stores, svc.path(customer, "small-0"), 300)
        proxy.failing = True
        try:
            resp = await timed(
                figures,
                "get",
                limit,
                svc.client.get(f"/v1/objects/{customer}/account/small-0", headers={**svc.auth, "X-Purpose": "service"}),
            )
            assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
        finally:
            proxy.failing = False
        status, body, version = await svc.get(customer, "small-0")
        assert (status, body, version) == (200, *acked["small-0"])
        await eventually(lambda: same_in_both("small-0"), timeout=30, what="jp's copy of small-0 repaired")

        # Nothing acknowledged was lost: both stores at the acknowledged versions, the same ciphertext.
        await check_both_stores(svc, customer, acked)
    figures.report()
