"""One run of one partition: lease, start checks, checkpoint, partitions side by side."""

import asyncio

import pytest

from regions.local import LocalRegion
from replicator.hlc import Version
from replicator.journal.sqlite import SqliteJournal
from replicator.reconcile import CannotRun, DestroyedKeys, Options, run_job
from tests.support.seed import DAY_MS, path, put_live, state

NOW = 1_900_000_000_000


@pytest.fixture
async def world(tmp_path):
    a, b = LocalRegion(tmp_path / "ca", name="ca"), LocalRegion(tmp_path / "jp", name="jp")
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    yield a, b, journal
    await journal.close()
    await a.close()
    await b.close()


def job(a, b, journal, owner="w1", **options):
    return run_job(
        a, b, journal, options=Options(**options), owner=owner, retention={"account": None}, destroyed=set(), now_ms=NOW
    )


async def seed(a, n=50):
    names = [path(f"c{i}", "x") for i in range(n)]
    for name in names:
        await put_live(a, name, Version(NOW - DAY_MS, 0, "n1"))
    return names


async def test_a_held_lease_means_the_run_cannot_start(world):
    a, b, journal = world
    assert await journal.acquire_lease("reconcile:v1/@1/1", "someone-else", 600)
    with pytest.raises(CannotRun, match="lease"):
        await job(a, b, journal)
    report = await job(a, b, journal, dry_run=True)  # a dry run takes no lease
    assert report.exit_code == 0


async def test_the_lease_is_released_at_the_end_even_when_the_start_fails(world, tmp_path):
    a, b, journal = world
    down = LocalRegion("/dev/null/region", name="jp")
    with pytest.raises(CannotRun, match="'jp' is not available"):
        await job(a, down, journal)
    assert await journal.acquire_lease("reconcile:v1/@1/1", "w2", 60)
    await journal.release_lease("reconcile:v1/@1/1", "w2")
    await job(a, b, journal)
    assert await journal.acquire_lease("reconcile:v1/@1/1", "w2", 60)


async def test_partitions_split_the_work_without_overlap(world):
    a, b, journal = world
    names = await seed(a, 80)
    reports = await asyncio.gather(*(job(a, b, journal, owner=f"w{i}", partition=(i, 4)) for i in range(1, 5)))
    assert sum(r.names for r in reports) == 80
    assert sum(r.counts["copy"]["done"] for r in reports) == 80
    assert all(r.names > 0 for r in reports)
    assert set(await state(b)) == set(names)


async def test_checkpoint_is_kept_on_a_stop_and_cleared_after_a_whole_run(world):
    a, b, journal = world
    names = sorted(await seed(a, 30), key=str.encode)
    key = "reconcile:v1/@1/1"
    await journal.save_checkpoint(key, names[9])  # as a crashed run left it
    fresh = await job(a, b, journal, dry_run=True)
    assert fresh.names == 30  # without --resume the whole scope
    resumed = await job(a, b, journal, resume=True)
    assert resumed.names == 20 and resumed.counts["copy"]["done"] == 20
    assert resumed.scope["resumed_after"] == names[9]
    assert await journal.load_checkpoint(key) is None
    everything = await job(a, b, journal, resume=True)
    assert everything.names == 30 and everything.counts["copy"]["done"] == 10


class Forgetful(SqliteJournal):
    """A journal whose lease another runner takes over at the first renewal."""

    async def renew_lease(self, key, owner, ttl):
        return False


async def test_a_lost_lease_stops_the_run(tmp_path):
    a, b = LocalRegion(tmp_path / "ca", name="ca"), LocalRegion(tmp_path / "jp", name="jp")
    journal = Forgetful(tmp_path / "j.sqlite3")

    class Slow:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        async def get(self, name):
            await asyncio.sleep(0.05)
            return await self.inner.get(name)

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    try:
        await seed(a, 40)
        # The lease is lost at the first renewal (a third of the TTL: 0.3 s), a few copies in on a loaded
        # machine (the walk first starts its listings) and long before the 40 take 2 s.
        report = await job(Slow(a), b, journal, lease_ttl=0.9, concurrency=1)
        assert report.stopped == "lease-lost" and report.exit_code == 1
        assert 0 < report.counts["copy"]["done"] < 40
        assert await journal.load_checkpoint("reconcile:v1/@1/1") == report.checkpoint
    finally:
        await journal.close()
        await a.close()
        await b.close()


def test_destroyed_keys_asks_once_per_key_and_stays_bounded():
    asked = []

    def is_destroyed(dek):
        asked.append(dek)
        return dek == "gone"

    keys = DestroyedKeys(is_destroyed, size=2)
    assert "gone" in keys and "gone" in keys and "ok" not in keys
    assert asked == ["gone", "ok"]
    assert "third" not in keys and len(keys._seen) <= 2
