"""Random interleavings of writes, deletes, outages and failing reconciles; then one clean reconcile.

The service's write path, modelled simply: a write puts the same object (a
fresh version from one Clock) to each region that is up and not failing this
once, and is acknowledged when at least one region stored it; a delete puts a
tombstone the same way. Between those, reconciles run with regions failing
some of their calls at random (a run that breaks half-way), and time moves on
(so ``visit`` objects expire and tombstones pass their grace period). A
write or delete of an ``account`` name first keeps, in each region it
reaches, what that region held (``<name>/<version>``, as the service's
:mod:`replicator.paths.versions` does), for ``KEEP`` days.

Always: every acknowledged write is still the newest thing some region holds
for its name (unless it expired, or is a tombstone both regions held past its
grace). After a reconcile with both regions up: both regions hold the same
set, each name at its highest version, no deleted object resurrected, no
acknowledged live write lost, expired objects gone, every kept version held
by both regions within its window and by neither after it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from regions import NotFound, Unavailable
from regions.local import LocalRegion
from replicator.hlc import Clock, Version
from replicator.layout import ObjectMeta, version_of
from replicator.reconcile import Reconciler
from tests.support.faulty import FaultyRegion
from tests.support.seed import path

DAY_MS = 86_400_000
GRACE_MS = 7 * DAY_MS
RETENTION = {"account": None, "visit": 90}
KEEP = {"account": 30, "visit": 0}
NAMES = [path("c1", "a"), path("c1", "b"), path("c2", "a", "visit"), path("c3", "z")]
START_MS = 1_800_000_000_000


class Flaky:
    """A region whose data calls fail at random (listings work): a reconcile that breaks part-way."""

    def __init__(self, inner, rnd: random.Random, p: float):
        self.inner, self.name, self.rnd, self.p = inner, inner.name, rnd, p
        self.features = inner.features

    def _maybe_fail(self, name):
        if self.rnd.random() < self.p:
            raise Unavailable("injected failure", region=self.name, name=name)

    async def put(self, name, body, meta, **conditions):
        self._maybe_fail(name)
        return await self.inner.put(name, body, meta, **conditions)

    async def get(self, name):
        self._maybe_fail(name)
        return await self.inner.get(name)

    async def head(self, name):
        self._maybe_fail(name)
        return await self.inner.head(name)

    async def delete(self, name, **conditions):
        self._maybe_fail(name)
        await self.inner.delete(name, **conditions)

    def list(self, prefix=""):
        return self.inner.list(prefix)


class ReconcileMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        shm = Path("/dev/shm")
        self.dir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
        self.local = {s: LocalRegion(self.dir / s, name=s) for s in ("ca", "jp")}
        self.faulty = {s: FaultyRegion(r) for s, r in self.local.items()}
        self.now = START_MS
        self.clock = Clock("n1", wall_ms=lambda: self.now)
        # The newest acknowledged write of each name: (version, tombstone, class, written_ms, body)
        self.latest: dict[str, tuple] = {}
        # Each kept version: (version, tombstone, body) and every time a region superseded it.
        self.kept: dict[str, tuple] = {}
        self.superseded: dict[str, list[int]] = {}

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self):
        try:
            self.reconcile_with_both_up()
        finally:
            for r in self.local.values():
                self.run(r.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the service's write path ---------------------------------------------------------

    def _keep(self, name: str, fail: str) -> None:
        """Keep what each reachable region holds at ``name`` before it is replaced (the write path's order)."""
        if KEEP[name.split("/")[2]] == 0:
            return
        for side, region in self.faulty.items():
            if side == fail:
                continue
            try:
                info = self.run(region.head(name))
                _, stream = self.run(region.get(name))
                body = b"".join(self.run(_collect(stream)))
                meta = ObjectMeta.of(info)
                kept = f"{name}/{meta.version}"
                self.run(region.put(kept, body, replace(meta, superseded_ms=self.now).to_meta()))
            except (NotFound, Unavailable):
                continue
            self.kept[kept] = (meta.version, meta.tombstone, body)
            self.superseded.setdefault(kept, []).append(self.now)

    def _store(self, name: str, body: bytes, meta: ObjectMeta, fail: str) -> bool:
        self._keep(name, fail)
        stored = False
        for side, region in self.faulty.items():
            if side == fail:
                continue  # this put fails (a partial failure)
            try:
                self.run(region.put(name, body, meta.to_meta()))
                stored = True
            except Unavailable:
                pass  # the region is down
        return stored

    @rule(name=st.sampled_from(NAMES), fail=st.sampled_from(["", "ca", "jp"]), size=st.integers(1, 64))
    def write(self, name, fail, size):
        version = self.clock.now()
        data_class = name.split("/")[2]
        body = str(version).encode() * size
        meta = ObjectMeta(version, data_class, self.now, dek_id="dek_live", sealed_name="s")
        if self._store(name, body, meta, fail):
            self.latest[name] = (version, False, data_class, self.now, body)

    @rule(name=st.sampled_from(NAMES), fail=st.sampled_from(["", "ca", "jp"]))
    def delete(self, name, fail):
        version = self.clock.now()
        meta = ObjectMeta(version, name.split("/")[2], self.now, tombstone=True)
        if self._store(name, b"", meta, fail):
            self.latest[name] = (version, True, meta.data_class, self.now, b"")

    @rule(side=st.sampled_from(["ca", "jp"]))
    def toggle_outage(self, side):
        self.faulty[side].down = not self.faulty[side].down

    @rule(days=st.sampled_from([1, 10, 100]))
    def time_passes(self, days):
        self.now += days * DAY_MS

    # -- reconciles -------------------------------------------------------------------------

    def _reconciler(self, a, b, concurrency=3) -> Reconciler:
        return Reconciler(
            a,
            b,
            now_ms=self.now,
            retention=RETENTION,
            keep=KEEP,
            destroyed=set(),
            grace_ms=GRACE_MS,
            concurrency=concurrency,
        )

    @rule(seed=st.integers(0, 2**32), p=st.sampled_from([0.2, 0.5]))
    def reconcile_that_fails_part_way(self, seed, p):
        # One name at a time and one random stream per region: the same failures on a replay.
        ca, jp = (Flaky(self.local[s], random.Random(f"{seed}-{s}"), p) for s in ("ca", "jp"))
        report = self.run(self._reconciler(ca, jp, concurrency=1).run(["v1/"]))
        assert report.stopped is None

    @rule()
    def reconcile_with_both_up(self):
        for region in self.faulty.values():
            region.down = False
        report = self.run(self._reconciler(self.faulty["ca"], self.faulty["jp"]).run(["v1/"]))
        assert report.error_count == 0, report.errors
        ca, jp = self._holdings("ca"), self._holdings("jp")
        assert ca == jp, "both regions hold the same set, at the same versions"
        for name in NAMES:
            held = ca.get(name)
            want = self.latest.get(name)
            if want is None:
                assert held is None, f"{name}: never acknowledged, yet held"
                continue
            version, tomb, data_class, written, body = want
            if tomb:
                # Kept, or purged once both held it past the grace period: never live again.
                assert held == (version, True) or (held is None and self.now - written > self._grace(data_class)), (
                    name,
                    held,
                )
            elif self._expired(data_class, written):
                assert held is None, f"{name}: expired, still held"
            else:
                assert held == (version, False), f"{name}: acknowledged write {version} lost: {held}"
                for side in ("ca", "jp"):
                    _, stream = self.run(self.local[side].get(name))
                    assert b"".join(self.run(_collect(stream))) == body
            if held is None:
                self.latest.pop(name)
        for kept, (version, tomb, body) in list(self.kept.items()):
            window = KEEP[kept.split("/")[2]] * DAY_MS
            held = ca.get(kept)
            if all(self.now - sup <= window for sup in self.superseded[kept]):
                assert held == (version, tomb), f"{kept}: kept version lost within its window: {held}"
                for side in ("ca", "jp"):
                    _, stream = self.run(self.local[side].get(kept))
                    assert b"".join(self.run(_collect(stream))) == body
            elif all(self.now - sup > window for sup in self.superseded[kept]):
                assert held is None, f"{kept}: kept past its window"
                self.kept.pop(kept)

    def _grace(self, data_class: str) -> int:
        return max(GRACE_MS, KEEP[data_class] * DAY_MS)

    def _expired(self, data_class: str, written: int) -> bool:
        days = RETENTION[data_class]
        return days is not None and self.now - written > days * DAY_MS

    def _holdings(self, side) -> dict[str, tuple[Version, bool]]:
        async def go():
            return {i.name: (version_of(i), i.meta.get("tomb") == "1") async for i in self.local[side].list("v1/")}

        return self.run(go())

    @invariant()
    def no_acknowledged_write_is_lost(self):
        for name, (version, tomb, data_class, written, _) in self.latest.items():
            held = [h for h in (self._holdings(s).get(name) for s in ("ca", "jp")) if h is not None]
            newest = max(held, default=None)
            if tomb:
                ok = newest == (version, True) or (newest is None and self.now - written > self._grace(data_class))
            elif self._expired(data_class, written):
                ok = newest in (None, (version, False))
            else:
                ok = newest == (version, False)
            assert ok, f"{name}: newest held is {newest}, acknowledged {version} (tombstone={tomb})"


async def _collect(stream):
    return [c async for c in stream]


ReconcileMachine.TestCase.settings = settings(
    max_examples=250, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestReconcile = ReconcileMachine.TestCase
