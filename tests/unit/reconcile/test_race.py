"""A write that lands between the reconciler's re-check and its act is never lost (local driver).

The executor re-reads the target's head before it overwrites or deletes, then
acts conditionally on that head's etag. These tests put a newer write into the
region right after that head returned (the worst moment) and check that it
survives, whatever the plan was; the same for the replication workers' copy.
"""

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regions.local import LocalRegion
from replicator.replication import copy_newest
from tests.support.seed import DAY_MS, path, put_live, put_tomb, state

from .test_executor import NOW, reconciler, v

NAME = path("c", "raced")
RACER = v(9)  # newer than anything the plan saw


class RacesAfterHead:
    """A region where ``write`` lands right after the first ``head``: between re-check and act."""

    def __init__(self, inner, write):
        self.inner, self.name, self._write = inner, inner.name, write
        self.raced = None  # what the racing write stored

    async def head(self, name):
        info = await self.inner.head(name)
        if self.raced is None:
            self.raced = await self._write(self.inner, name)
        return info

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


async def race_live(region, name):
    await put_live(region, name, RACER, body=b"the racing write")
    return (await state(region))[name]


async def race_tomb(region, name):
    await put_tomb(region, name, RACER)
    return (await state(region))[name]


# What a region can hold for NAME before the run: each row makes the planner pick a different
# action (copy over a stale replica, tombstone over live, expire, shred, purge, repair...).
SEEDS = {
    "absent": None,
    "live v1": lambda r: put_live(r, NAME, v(1)),
    "live v2": lambda r: put_live(r, NAME, v(2)),
    "tomb v1": lambda r: put_tomb(r, NAME, v(1)),
    "tomb v2": lambda r: put_tomb(r, NAME, v(2)),
    "old tomb v1": lambda r: put_tomb(r, NAME, v(1), written_ms=NOW - 8 * DAY_MS),
    "live v1, DEK destroyed": lambda r: put_live(r, NAME, v(1), dek="dek_gone"),
    "expired visit v1": lambda r: put_live(r, NAME, v(1), data_class="visit", written_ms=NOW - 91 * DAY_MS),
    "live v1, other bytes": lambda r: put_live(r, NAME, v(1), body=b"other bytes"),
}


async def run_once(tmp: Path, seed_a: str, seed_b: str, side: str, racer) -> None:
    a, b = LocalRegion(tmp / "ca", name="ca"), LocalRegion(tmp / "jp", name="jp")
    try:
        for region, seed in ((a, seed_a), (b, seed_b)):
            if SEEDS[seed] is not None:
                await SEEDS[seed](region)
        raced = RacesAfterHead(a if side == "a" else b, racer)
        wrapped = (raced, b) if side == "a" else (a, raced)
        report = await reconciler(*wrapped).run(["v1/"])
        # Only what the executor reports by design (a conflict, two replicas that both verify).
        assert all(e["error"].startswith("Unresolved") for e in report.errors), report.errors
        if raced.raced is not None:
            assert (await state(raced.inner))[NAME] == raced.raced, (seed_a, seed_b, side, report.counts)
    finally:
        await a.close()
        await b.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed_a=st.sampled_from(sorted(SEEDS)),
    seed_b=st.sampled_from(sorted(SEEDS)),
    side=st.sampled_from("ab"),
    racer=st.sampled_from([race_live, race_tomb]),
)
def test_a_write_racing_the_act_is_never_lost(seed_a, seed_b, side, racer):
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    try:
        asyncio.run(run_once(tmp, seed_a, seed_b, side, racer))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_each_destroying_action_is_skipped_when_raced(tmp_path):
    # The deterministic core of the property above: one case per kind of overwrite or delete.
    cases = [
        ("live v2", "live v1", "b", "copy"),
        ("tomb v2", "live v1", "b", "delete"),
        ("tomb v2", "tomb v1", "b", "copy_tombstone"),
        ("expired visit v1", "live v1", "b", "expire"),
        ("live v1, DEK destroyed", "live v1", "a", "shred"),
        ("old tomb v1", "old tomb v1", "a", "purge"),
    ]
    for i, (seed_a, seed_b, side, kind) in enumerate(cases):
        a, b = LocalRegion(tmp_path / f"{i}ca", name="ca"), LocalRegion(tmp_path / f"{i}jp", name="jp")
        try:
            await SEEDS[seed_a](a)
            await SEEDS[seed_b](b)
            raced = RacesAfterHead(a if side == "a" else b, race_live)
            report = await reconciler(*((raced, b) if side == "a" else (a, raced))).run(["v1/"])
            assert raced.raced is not None, kind
            assert report.counts[kind]["skipped"] >= 1 and report.error_count == 0, (kind, report.counts)
            assert (await state(raced.inner))[NAME] == raced.raced, kind
        finally:
            await a.close()
            await b.close()


async def test_the_replication_copy_decides_again_when_raced(tmp_path):
    a, b = LocalRegion(tmp_path / "ca", name="ca"), LocalRegion(tmp_path / "jp", name="jp")
    try:
        await put_live(a, NAME, v(2))
        await put_live(b, NAME, v(1))
        dst = RacesAfterHead(b, race_live)
        assert await copy_newest(a, dst, NAME) == "current"  # the racing v9 beats the copy's v2
        assert (await state(b))[NAME] == dst.raced
    finally:
        await a.close()
        await b.close()
