"""Crash safety (issue 8, item 1): SIGKILL the service again and again under load; nothing acknowledged is lost.

``replicator serve`` runs as a subprocess over Azurite (``ca``) and Swift
behind Keystone (``jp``), with Swift reached through a relay that delays its
answers (:class:`~tests.support.crashdriver.LatencyRelay`), so a write spends
most of its time between its Azurite put and its Swift put. Client tasks
send PUTs (small ones buffered, large ones streamed chunk by chunk), DELETEs
and GETs to a few names each, overwriting the same names, and keep a ledger
of every answer; a request that got no answer is sometimes sent again (a
DELETE always). The service is SIGKILLed at random moments and at chosen
ones (mid-body: a large PUT half sent; after-body: a large PUT's body just
finished; soon after a small PUT or a DELETE was sent: the service is inside
its two region writes), then restarted. An answer that calls a region
"pending" is held to its promise at once: the workers bring that region
level before the client touches the name again.

After each kill the regions are read directly (the region drivers, not the
service) to see where each interrupted write got to: nowhere yet, one region
(between the two region writes), or both (only the answer was lost).

At the end the workers drain the journal, one ``replicator reconcile`` runs,
and the regions and the API must show every acknowledged write at its
version or a later one with the right plaintext, every acknowledged delete
still deleted, and nothing half-written. GETs during the run are checked the
same way as they are answered.

Seed: ``REPLICATOR_CRASH_SEED`` (default: a fresh one, printed). Figures: one
summary line on stdout (``pytest -s``) and, when ``REPLICATOR_RELIABILITY_OUT``
names a file, a ``crash_safety`` entry in that JSON file.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from keys import KeyFile, LocalKeyring, generate_token
from regions import NotFound, RetryPolicy
from replicator.config import load_config
from replicator.embedded import all_scopes, config_text
from replicator.hlc import Version
from replicator.layout import ObjectPath
from replicator.runtime import open_region
from tests.support.clouds import Stores, regions_toml
from tests.support.crashdriver import LatencyRelay, Op, ServiceProcess, body_of, sha256
from tests.support.eventually import eventually

KILLS = 25
WORKERS = 3
NAMES_PER_WORKER = 5  # few names: many overwrites of each
RETRY = {"delete": 1.0, "put": 0.5, "get": 0.0}  # chance a client sends a request that got no answer again
CUSTOMER, CLASS = "crash", "account"
JP_DELAY = 0.05  # seconds added to every Swift answer
LARGE = (2 << 20, 3 << 20)  # streamed bodies: 2–3 MiB, so several 1 MiB blocks and segments
CHUNK = 256 << 10
PACE = 0.01  # seconds between a large body's chunks
JOURNAL_LEASE = 5.0  # seconds a killed process's claimed journal rows wait before the next one takes them
PHASES = ("mid-body", "before-writes", "between-writes", "after-writes", "no-write-in-flight")


def write_config(directory: Path, stores: Stores, slow_clouds_yaml: Path) -> tuple[Path, str]:
    """The service's config (SQLite journal, key file) and its token; jp goes through the slow link."""
    KeyFile.generate(directory / "kek.key")
    token, token_hash = generate_token()
    regions = regions_toml(stores).replace(
        f'clouds_yaml = "{stores.clouds_yaml}"', f'clouds_yaml = "{slow_clouds_yaml}"'
    )
    assert str(slow_clouds_yaml) in regions
    path = directory / "replicator.toml"
    # journal_lease: copies here take well under a second; the default (60 s) is the drain's bound.
    path.write_text(
        config_text(
            "crash",
            regions,
            {"crash": (token_hash, all_scopes())},
            sections=(f"[limits]\nrequest_timeout = 5.0\nretry_attempts = 2\njournal_lease = {JOURNAL_LEASE}\n\n"),
        )
    )
    return path, token


def slow_clouds(stores: Stores, directory: Path) -> tuple[Path, LatencyRelay]:
    """A copy of the clouds.yaml whose object-store endpoint is a relay port; and Swift's real port."""
    endpoint = urlsplit(stores.swift.endpoint)
    data = yaml.safe_load(Path(stores.clouds_yaml).read_text())
    relay = LatencyRelay(endpoint.port, JP_DELAY)
    port = relay.start()
    data["clouds"][stores.cloud]["object_store_endpoint_override"] = f"http://127.0.0.1:{port}{endpoint.path}"
    path = directory / "clouds-slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, relay


def newest(*versions: str | None) -> str | None:
    known = [Version.parse(v) for v in versions if v]
    return str(max(known)) if known else None


class CrashRun:
    def __init__(
        self, seed: int, directory: Path, config: Path, token: str, stores: Stores, http: aiohttp.ClientSession
    ):
        self.seed, self.rng = seed, random.Random(seed)
        self.dir, self.config, self.stores, self.http = directory, config, stores, http
        self.auth = {"Authorization": f"Bearer {token}"}
        self.service = ServiceProcess(config, directory / "service.log")
        cfg = load_config(config)
        # The test reads the regions directly, and reaches Swift without the relay.
        direct = {
            "ca": cfg.regions["ca"],
            "jp": cfg.regions["jp"].model_copy(update={"clouds_yaml": Path(stores.clouds_yaml)}),
        }
        self.regions = {n: open_region(n, c, RetryPolicy(attempts=3, timeout=10)) for n, c in direct.items()}
        self.names = [f"w{w}/n{k}" for w in range(WORKERS) for k in range(NAMES_PER_WORKER)]
        self.paths: dict[str, str] = {}
        self.ops: list[Op] = []
        self.versions: dict[str, Op] = {}  # version -> the op that wrote it (acked or seen in a region)
        self.acked: dict[str, str] = {}  # name -> newest acknowledged version
        self.acked_by: dict[str, Op] = {}  # name -> the op whose answer acknowledged it
        self.kills: list[dict] = []
        self.violations: list[str] = []
        self.cycle = 0
        self.next_id = 0
        self.up = asyncio.Event()
        self.done = False
        self.force_large = False
        # When to set hit: ("mid", fraction) or ("end", 0) of a large body, ("put", 0) or ("delete", 0) sent.
        self.watch: tuple[str, float] | None = None
        self.hit = asyncio.Event()

    # -- the client ----------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"{self.service.url}/v1/objects/{CUSTOMER}/{CLASS}/{name}"

    def new_op(self, worker_rng: random.Random, name: str, kind: str | None = None, large: bool = False) -> Op:
        if kind is None:
            roll = worker_rng.random()
            kind = "put" if roll < 0.6 else "delete" if roll < 0.8 else "get"
            large = kind == "put" and worker_rng.random() < 0.25
        op = Op(id=self.next_id, cycle=self.cycle, name=name, kind=kind, large=large)
        if kind == "put":
            op.size = worker_rng.randint(*LARGE) if large else worker_rng.randint(1, 64 << 10)
        self.next_id += 1
        self.ops.append(op)
        return op

    async def client(self, w: int) -> None:
        rng = random.Random(f"{self.seed}/client/{w}")
        names = self.names[w * NAMES_PER_WORKER : (w + 1) * NAMES_PER_WORKER]
        retry: Op | None = None
        while not self.done:
            await self.up.wait()
            if retry is not None:  # a client whose request got no answer sends it again
                op, retry = self.new_op(rng, retry.name, retry.kind, retry.large), None
            elif self.force_large and w == 0:
                self.force_large = False
                op = self.new_op(rng, rng.choice(names), "put", True)
            else:
                op = self.new_op(rng, rng.choice(names))
            await self.send(op)
            if op.outcome == "lost" and rng.random() < RETRY[op.kind]:
                retry = op
            elif op.outcome == "unsent":  # never reached a service: not in the figures, sent again
                retry = op if op.kind != "get" else None

    async def _chunks(self, op: Op, body: bytes):
        op.sending = True
        for i in range(0, len(body), CHUNK):
            yield body[i : i + CHUNK]
            if self.watch and self.watch[0] == "mid" and (i + CHUNK) / len(body) >= self.watch[1]:
                self.hit.set()
            await asyncio.sleep(PACE)
        op.sending = False
        if self.watch and self.watch[0] == "end":
            self.hit.set()

    async def send(self, op: Op) -> None:
        op.sent_ms = time.time_ns() // 1_000_000
        if self.watch and self.watch[0] == op.kind and not op.large:
            self.hit.set()
        acked_before = self.acked.get(op.name)
        try:
            if op.kind == "put":
                body = body_of(self.seed, op.id, op.size)
                op.sha = sha256(body)
                data = self._chunks(op, body) if op.large else body
                async with self.http.put(self.url(op.name), data=data, headers=self.auth) as r:
                    op.status, answer = r.status, await r.json()
            elif op.kind == "delete":
                async with self.http.delete(self.url(op.name), headers=self.auth) as r:
                    op.status, answer = r.status, await r.json()
            else:
                async with self.http.get(self.url(op.name), headers={**self.auth, "X-Purpose": "service"}) as r:
                    op.status = r.status
                    data = await r.read()
                    answer = {"version": r.headers.get("X-Version", "")}
        except aiohttp.ClientConnectorError:
            op.outcome = "unsent"  # refused: the service was down, it never saw this one
            return
        except (TimeoutError, aiohttp.ClientError):
            op.outcome = "lost"
            return
        op.outcome = "acked" if op.status in (200, 201) else "answered"
        if op.kind == "get":
            self.check_read(op, op.status, answer["version"], sha256(data), acked_before)
            return
        if op.kind == "delete" and op.status == 404 and self.seen_max(op.name) is None:
            return  # nothing was ever stored under this name: 404 is the right answer
        if op.outcome != "acked":
            self.violations.append(f"op {op.id} {op.kind} {op.name}: answered {op.status} {answer}")
            return
        op.version, op.replication = answer["version"], answer.get("replication", "")
        op.regions = answer.get("regions", {})
        self.versions.setdefault(op.version, op)  # a repeated delete answers the earlier tombstone's version
        if self.acked.get(op.name) != newest(self.acked.get(op.name), op.version):
            self.acked[op.name], self.acked_by[op.name] = op.version, op
        if "pending" in op.regions.values():
            await self.await_level(op)

    async def await_level(self, op: Op) -> None:
        """An answer that calls a region "pending" promises a journal row: watch the workers bring that
        region level before this client's next request to the name could hide a broken promise."""
        for _ in range(3):  # a kill meanwhile only delays the row (the dead process's lease): wait on
            await self.up.wait()
            cycle, deadline = self.cycle, time.monotonic() + JOURNAL_LEASE + 3
            while time.monotonic() < deadline and self.cycle == cycle:
                metas = await self.heads(op.name)
                if all(
                    m is not None and Version.parse(m["version"]) >= Version.parse(op.version)
                    for r, m in metas.items()
                    if op.regions.get(r) == "pending"
                ):
                    return
                await asyncio.sleep(0.05)
            if self.cycle == cycle:
                self.violations.append(
                    f"op {op.id} {op.kind} {op.name}: acknowledged {op.version} with "
                    f"{op.regions}; the pending region was still behind "
                    f"{JOURNAL_LEASE + 3:g}s later"
                )
                return

    def check_read(self, op: Op, status: int, version: str, sha: str, acked_before: str | None) -> None:
        """A GET answered during the run: never older than what was acknowledged, never a wrong body."""
        op.version = version
        if status == 200:
            writer = self.versions.get(version)
            if writer is None or writer.kind != "put" or writer.name != op.name:
                self.violations.append(
                    f"GET {op.name} (op {op.id}) served version {version}, written by "
                    f"{'no known write' if writer is None else f'op {writer.id} {writer.kind}'}"
                )
            elif writer.sha != sha:
                self.violations.append(
                    f"GET {op.name} (op {op.id}) at {version}: plaintext differs from op {writer.id}"
                )
            if acked_before and Version.parse(version) < Version.parse(acked_before):
                self.violations.append(
                    f"GET {op.name} (op {op.id}) served {version}, older than the acknowledged {acked_before}"
                )
        elif status == 404:
            if (
                acked_before
                and self.versions[acked_before].kind == "put"
                and not self._deleted_since(op.name, acked_before)
            ):
                self.violations.append(
                    f"GET {op.name} (op {op.id}): 404, but {acked_before} was acknowledged and no delete came after it"
                )
        else:
            self.violations.append(f"GET {op.name} (op {op.id}): answered {status}")

    def _deleted_since(self, name: str, version: str) -> bool:
        floor = Version.parse(version)
        return any(o.kind == "delete" and o.name == name and Version.parse(v) > floor for v, o in self.versions.items())

    # -- what the regions hold -----------------------------------------------------------

    async def heads(self, name: str) -> dict[str, dict | None]:
        async def one(region):
            try:
                return dict((await region.head(self.paths[name])).meta)
            except NotFound:
                return None

        metas = await asyncio.gather(*(one(r) for r in self.regions.values()))
        return dict(zip(self.regions, metas))

    async def classify(self, op: Op, sending: bool, before: str | None) -> None:
        """Where a write the kill interrupted got to, read from the regions themselves."""
        metas = await self.heads(op.name)
        floor = Version.parse(before) if before else None
        new = {
            r: m["version"]
            for r, m in metas.items()
            if m is not None and (floor is None or Version.parse(m["version"]) > floor)
        }
        if len(set(new.values())) > 1:
            self.violations.append(f"op {op.id}: two new versions of {op.name} after one write: {new}")
        if sending:
            op.phase = "mid-body"
            if new:
                self.violations.append(f"op {op.id}: a put whose body never fully arrived was stored: {new}")
        else:
            op.phase = ("before-writes", "between-writes", "after-writes")[len(new)]
        if new:
            version = next(iter(new.values()))
            tomb = all(metas[r].get("tomb") == "1" for r in new)
            if tomb != (op.kind == "delete"):
                self.violations.append(
                    f"op {op.id} {op.kind}: the new version {version} is {'a tombstone' if tomb else 'live'}"
                )
            op.landed = version
            self.versions.setdefault(version, op)
            op.regions = {r: "stored" if r in new else "missing" for r in self.regions}

    def seen_max(self, name: str) -> str | None:
        """The newest version of ``name`` that any op put in a region, as far as the client knows."""
        return newest(*(v for v, o in self.versions.items() if o.name == name))

    # -- the killer ----------------------------------------------------------------------

    async def one_cycle(self, mode: str) -> None:
        self.hit.clear()
        started = time.monotonic()
        if mode == "random":
            await asyncio.sleep(self.rng.uniform(0.1, 1.2))
        else:
            self.watch = {
                "mid-body": ("mid", self.rng.uniform(0.2, 0.9)),
                "after-body": ("end", 0.0),
                "small-put": ("put", 0.0),
                "delete": ("delete", 0.0),
            }[mode]
            self.force_large = mode in ("mid-body", "after-body")
            try:
                await asyncio.wait_for(self.hit.wait(), 10)
            except TimeoutError:
                mode += " (timed out)"
            self.watch = None
            if mode == "after-body":  # the service is inside its region puts (Swift's take ≥ 3 round trips)
                await asyncio.sleep(self.rng.uniform(0.05, 0.6))
            elif mode == "small-put":  # past Azurite's put, inside Swift's HEAD + PUT
                await asyncio.sleep(self.rng.uniform(0.03, 0.15))
            elif mode == "delete":  # past the lookup (a Swift HEAD) and Azurite's tombstone
                await asyncio.sleep(self.rng.uniform(0.06, 0.16))
        self.up.clear()
        inflight = [
            (op, op.sending, self.seen_max(op.name)) for op in self.ops if op.outcome == "pending" and op.kind != "get"
        ]
        self.service.kill()
        deadline = time.monotonic() + 30
        while any(op.outcome == "pending" for op in self.ops):  # the clients see the connections drop
            assert time.monotonic() < deadline, "a request outlived the killed service by 30 s"
            await asyncio.sleep(0.01)
        lost = [(op, sending, before) for op, sending, before in inflight if op.outcome == "lost"]
        for op, sending, before in lost:
            await self.classify(op, sending, before)
        phases = [op.phase for op, _, _ in lost]
        order = ("between-writes", "mid-body", "after-writes", "before-writes")
        self.kills.append(
            {
                "cycle": self.cycle,
                "mode": mode,
                "after_s": round(time.monotonic() - started, 3),
                "writes_in_flight": phases,
                "phase": next((p for p in order if p in phases), "no-write-in-flight"),
            }
        )
        self.cycle += 1
        await self.service.start(self.http)
        self.up.set()

    async def run(self) -> None:
        await self.service.start(self.http)
        keyring = LocalKeyring.open(self.dir / "keyring.json", KeyFile(self.dir / "kek.key"))
        tagger = keyring.tagger()
        self.paths = {n: str(ObjectPath.of(tagger, CUSTOMER, CLASS, n)) for n in self.names}
        keyring.close()
        modes = []
        while len(modes) < KILLS:
            five = ["mid-body", "after-body", "small-put", "delete", "random"]
            self.rng.shuffle(five)
            modes += five
        self.up.set()
        clients = [asyncio.ensure_future(self.client(w)) for w in range(WORKERS)]
        try:
            for mode in modes[:KILLS]:
                await self.one_cycle(mode)
            await asyncio.sleep(0.5)  # some traffic on the last process too
        finally:
            self.done = True
            await asyncio.gather(*clients)

    # -- after the run -------------------------------------------------------------------

    async def drain(self, timeout: float) -> tuple[float, int, int]:
        """Wait until the journal holds no task (the service's workers carried them all out).

        Returns the seconds it took, the rows there were, and how many of them a killed process
        had claimed: those wait for its lease to lapse (``limits.journal_lease``) before the
        restarted service may take them.
        """
        started = time.monotonic()
        db = sqlite3.connect(f"file:{self.dir / 'journal.sqlite3'}?mode=ro", uri=True)
        try:
            live_owner = f"crash-{self.service.process.pid}"
            rows = db.execute("SELECT lease_owner, lease_until FROM tasks").fetchall()
            held = sum(1 for owner, until in rows if owner and owner != live_owner and until > time.time())
            while (n := db.execute("SELECT count(*) FROM tasks").fetchone()[0]) > 0:
                if time.monotonic() - started > timeout:
                    left = db.execute(
                        "SELECT kind, dst, attempts, last_error, lease_owner, lease_until - ? FROM tasks",
                        (time.time(),),
                    ).fetchall()
                    raise AssertionError(f"the journal still holds {n} tasks after {timeout:g}s: {left}")
                await asyncio.sleep(0.1)
        finally:
            db.close()
        return time.monotonic() - started, len(rows), held

    async def check_acked_in_both(self, when: str) -> None:
        """Every region holds each name's newest acknowledged write, or something newer."""
        for name in self.names:
            version = self.acked.get(name)
            if version is None:
                continue
            op, answer = self.versions[version], self.acked_by[name]
            for region, meta in (await self.heads(name)).items():
                held = meta["version"] if meta else None
                if held is None and op.kind == "delete":
                    continue  # never held it: nothing to resurrect
                if held is None or Version.parse(held) < Version.parse(version):
                    self.violations.append(
                        f"{when}: {region} holds {held or 'nothing'} for {name}, older than the acknowledged "
                        f"{op.kind} {version} (op {answer.id} answered regions={answer.regions})"
                    )

    async def reconcile(self) -> dict:
        report = self.dir / "reconcile.json"
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                "from replicator.cli import main; main()",
                "reconcile",
                "--config",
                str(self.config),
                "--report",
                str(report),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=self.dir,
        )
        assert done.returncode == 0, f"replicator reconcile exited {done.returncode}:\n{done.stderr[-3000:]}"
        return json.loads(report.read_text())

    async def check_final(self) -> dict:
        """Both regions level, and what they hold is what the ledger says; the API agrees."""
        live = {}
        for name in self.names:
            metas = await self.heads(name)
            held = {r: (m["version"] if m else None) for r, m in metas.items()}
            if len(set(held.values())) != 1:
                self.violations.append(f"final: {name} differs between regions: {held}")
                continue
            version = held["ca"]
            acked = self.acked.get(name)
            if version is None:
                if acked and self.versions[acked].kind == "put":
                    self.violations.append(f"final: {name} is in neither region; {acked} was acknowledged")
                continue
            writer = self.versions.get(version)
            if writer is None or writer.name != name:
                self.violations.append(f"final: {name} holds {version}, which no op of this name wrote")
                continue
            if acked and Version.parse(version) < Version.parse(acked):
                self.violations.append(f"final: {name} holds {version}, older than the acknowledged {acked}")
            tomb = metas["ca"].get("tomb") == "1"
            if tomb != (writer.kind == "delete"):
                self.violations.append(f"final: {name} at {version} tomb={tomb} but op {writer.id} was a {writer.kind}")
                continue
            async with self.http.get(self.url(name), headers={**self.auth, "X-Purpose": "service"}) as r:
                body = await r.read()
                status, served = r.status, r.headers.get("X-Version")
            if writer.kind == "delete":
                if status != 404:
                    self.violations.append(f"final: {name} was deleted at {version} but GET answers {status}")
                continue
            live[name] = version
            if status != 200 or served != version or sha256(body) != writer.sha:
                self.violations.append(
                    f"final: GET {name}: {status} version {served}, expected {version} "
                    f"with op {writer.id}'s plaintext (match={sha256(body) == writer.sha})"
                )
            digests = set()
            for region in self.regions.values():  # the drivers check each stored digest as they read
                info, stream = await region.get(self.paths[name])
                async for _ in stream:
                    pass
                digests.add(info.digest)
            if len(digests) != 1:
                self.violations.append(f"final: {name} at {version}: the regions' bytes differ")
        # Nothing else is stored: no stray or half-written object in either region's listing. The class keeps
        # versions: <object path>/<version> is a version some op of that very name wrote.
        mine = set(self.paths.values())
        kept = {f"{self.paths[op.name]}/{v}" for v, op in self.versions.items()}
        for region in self.regions.values():
            stray = [i.name async for i in region.list("v1/") if i.name not in mine and i.name not in kept]
            if stray:
                self.violations.append(f"final: {region.name} lists objects no name maps to: {stray[:5]}")
        async with self.http.get(
            f"{self.service.url}/v1/objects/{CUSTOMER}", params={"class": CLASS, "limit": "1000"}, headers=self.auth
        ) as r:
            listed = {o["name"]: o["version"] for o in (await r.json())["objects"]}
        if listed != live:
            self.violations.append(f"final: the API lists {listed}, expected {live}")
        return live

    async def orphan_segments(self) -> int:
        """Swift segments no manifest refers to (a streamed put cut off by a kill leaves them: space only)."""
        used = set()
        for name in self.names:
            status, headers, body = await self.stores.swift.call(
                "GET", self.stores.swift_container, self.paths[name], query="multipart-manifest=get"
            )
            if status == 200 and headers.get("X-Static-Large-Object", "").lower() == "true":
                used |= {s["name"].split("/", 2)[2] for s in json.loads(body)}
        segments = await self.stores.swift_names(self.stores.segments)
        return len([s for s in segments if s not in used])

    async def uncommitted_blobs(self) -> int:
        """Azure blobs that have only uncommitted blocks (a streamed put cut off: never readable)."""
        committed = set(await self.stores.azure_names())
        return len(set(await self.stores.azure_names(uncommitted=True)) - committed)

    async def audit_verify(self) -> None:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                "from replicator.cli import main; main()",
                "audit",
                "verify",
                str(self.dir / "audit.log"),
                "--config",  # the chain is keyed: the audit key comes from the config's key provider
                str(self.config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            self.violations.append(f"audit verify after the kills: {done.stderr.strip()}")

    async def close(self) -> None:
        self.service.stop()
        for region in self.regions.values():
            await region.close()


def report(summary: dict) -> None:
    phases = summary["kills_by_phase"]
    print(
        "\ncrash-safety: seed={seed} kills={kills} ({phases}) ops={ops} acked={acked} lost={lost} "
        "lost_but_stored={landed} journal_rows={journal_rows_at_end} (held by a killed process "
        "{journal_rows_held_by_a_killed_process}, drained in {drain_s}s) reconcile={reconcile} "
        "orphan_segments={orphans} uncommitted_only_blobs={uncommitted_only_blobs} violations={violations} duration_s={duration_s}".format(
            **summary,
            phases=", ".join(f"{p} {phases.get(p, 0)}" for p in PHASES),
            reconcile=summary["reconcile_counts"],
            orphans=summary["orphan_segments"],
        )
    )
    out = os.environ.get("REPLICATOR_RELIABILITY_OUT")
    if out:  # other fault tests may write their own entries to the same file
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
        data["crash_safety"] = summary
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


async def test_sigkill_under_load_loses_no_acknowledged_write(stores, tmp_path):
    seed = int(os.environ.get("REPLICATOR_CRASH_SEED") or random.randrange(1 << 32))
    print(f"\ncrash-safety: seed {seed} (rerun with REPLICATOR_CRASH_SEED={seed})")
    started = time.monotonic()
    slow_yaml, relay = slow_clouds(stores, tmp_path)
    config, token = write_config(tmp_path, stores, slow_yaml)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        # aiohttp silently sends a PUT, DELETE or GET again when its kept-alive connection drops (as a
        # kill does): the ledger would record one op where the service saw two. Its own TestClient
        # turns this off the same way.
        http._retry_connection = False
        run = CrashRun(seed, tmp_path, config, token, stores, http)
        try:
            await run.run()
            drain_s, drain_rows, drain_held = await run.drain(timeout=JOURNAL_LEASE + 20)
            await run.check_acked_in_both("after the journal drained")
            reconciled = await run.reconcile()
            live = await run.check_final()
            await run.audit_verify()
            orphans = await run.orphan_segments()
            uncommitted = await run.uncommitted_blobs()
        except BaseException:
            if run.violations:  # what was seen before the step that failed
                print("crash-safety: violations so far:\n" + "\n".join(run.violations))
            raise
        finally:
            await run.close()
            relay.close()
    unhandled = [line for line in run.service.log().splitlines() if "unhandled error" in line]
    run.violations += [f"service log: {line[:300]}" for line in unhandled]
    sent = [op for op in run.ops if op.outcome != "unsent"]
    outcomes = Counter(op.outcome for op in sent)
    summary = {
        "seed": seed,
        "kills": len(run.kills),
        "kills_by_phase": dict(Counter(k["phase"] for k in run.kills)),
        "kills_by_mode": dict(Counter(k["mode"] for k in run.kills)),
        "interrupted_writes_by_phase": dict(Counter(op.phase for op in run.ops if op.phase)),
        "ops": len(sent),
        "acked": outcomes["acked"],
        "lost": outcomes["lost"],
        "landed": sum(1 for op in run.ops if op.landed),
        "by_kind": dict(Counter(f"{op.kind}{'-large' if op.large else ''}" for op in sent)),
        "live_names_at_end": len(live),
        "names": len(run.names),
        "service_start_s_median": round(sorted(run.service.starts)[len(run.service.starts) // 2], 2),
        "drain_s": round(drain_s, 2),
        "journal_rows_at_end": drain_rows,
        "journal_rows_held_by_a_killed_process": drain_held,
        "reconcile_counts": reconciled.get("counts", {}),
        "orphan_segments": orphans,
        "uncommitted_only_blobs": uncommitted,
        "violations": len(run.violations),
        "duration_s": round(time.monotonic() - started, 1),
        "kill_log": run.kills,
    }
    report(summary)
    assert not run.violations, f"seed {seed}:\n" + "\n".join(run.violations)
    assert len(run.kills) >= 20
    assert summary["interrupted_writes_by_phase"].get("mid-body", 0), (
        f"seed {seed}: no kill landed while a body was being sent: {summary}"
    )
    assert summary["interrupted_writes_by_phase"].get("between-writes", 0), (
        f"seed {seed}: no kill landed between the two region writes: {summary}"
    )


# -- what the crash test found, each pinned in-process on the embedded default (local regions) --------


@pytest.fixture
async def local_service(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from replicator.embedded import ensure
    from replicator.http import handlers as api_mod
    from replicator.http.app import build_app

    config_path, token = ensure(tmp_path / "var")
    app = build_app(load_config(config_path), workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        client.auth = {"Authorization": f"Bearer {token}"}
        client.service = app[api_mod.SERVICE]
        yield client


async def test_a_repeated_delete_after_a_kill_between_the_tombstone_writes_brings_the_other_region_level(local_service):
    """A kill between the two tombstone puts leaves ca deleted and jp live at the older version. The
    client sends its DELETE again: the answer says jp is "pending", so a journal row must carry the
    tombstone there (it used to be acknowledged with nothing scheduled: jp kept the old live copy until
    the nightly reconcile)."""
    from replicator.layout import ObjectMeta

    client, service = local_service, local_service.service
    url = "/v1/objects/c/account/doc"
    resp = await client.put(url, data=b"old", headers=client.auth)
    assert resp.status == 201 and (await resp.json())["replication"] == "complete"
    path = str(ObjectPath.of(service.tagger, "c", "account", "doc"))
    # What the killed process left: its tombstone in ca only, no journal row, no answer.
    tomb = ObjectMeta(version=service.clock.now(), data_class="account", written_ms=service.now_ms(), tombstone=True)
    await service.regions["ca"].put(path, b"", tomb.to_meta())

    resp = await client.delete(url, headers=client.auth)
    assert resp.status == 200
    answer = await resp.json()
    assert answer == {"version": str(tomb.version), "regions": {"ca": "deleted", "jp": "pending"}}

    async def tombstone_in_jp():  # the workers carry the journal row out
        return (await service.regions["jp"].head(path)).meta.get("tomb") == "1"

    await eventually(
        tombstone_in_jp,
        timeout=5,
        interval=0.05,
        what="jp's live object replaced by the acknowledged delete's tombstone (it was journaled)",
    )
    assert (await service.journal.backlog()).pending == 0
    assert (await client.get(url, headers={**client.auth, "X-Purpose": "service"})).status == 404
