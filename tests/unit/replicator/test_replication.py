"""Replication workers over two local regions and a SQLite journal."""

import asyncio
import time

import pytest

from regions import NotFound
from regions.local import LocalRegion
from replicator.hlc import Version
from replicator.journal.sqlite import SqliteJournal
from replicator.layout import ObjectMeta
from replicator.observe.metrics import Metrics
from replicator.replication import NameLocks, Workers, copy_newest
from tests.support.localstore import rewrite_stored


def meta(ms: int, **kw) -> dict:
    return ObjectMeta(version=Version(ms, 0, "n1"), data_class="account", written_ms=ms, **kw).to_meta()


@pytest.fixture
async def world(tmp_path):
    regions = {"ca": LocalRegion(tmp_path / "ca", name="ca"), "jp": LocalRegion(tmp_path / "jp", name="jp")}
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    workers = Workers(journal, regions, NameLocks(), Metrics(), owner="t")
    yield regions, journal, workers
    await journal.close()
    for r in regions.values():
        await r.close()


async def body(region, name):
    _, stream = await region.get(name)
    return b"".join([c async for c in stream])


async def test_copy_brings_the_missing_replica_level(world):
    (ca, jp), journal, workers = world[0].values(), world[1], world[2]
    await ca.put("n", b"cipher", meta(1))
    await journal.add("copy", "n", src="ca", dst="jp")
    await workers.drain()
    assert await body(jp, "n") == b"cipher"
    assert (await jp.head("n")).meta == (await ca.head("n")).meta
    assert (await journal.backlog()).pending == 0


async def test_an_older_source_never_overwrites_a_newer_destination(world):
    (ca, jp), _, _ = world[0].values(), world[1], world[2]
    await ca.put("n", b"old", meta(1))
    await jp.put("n", b"new", meta(2))
    assert await copy_newest(ca, jp, "n") == "current"
    assert await body(jp, "n") == b"new"
    assert await copy_newest(jp, ca, "n") == "copied"
    assert await body(ca, "n") == b"new"


async def test_a_source_that_is_gone_ends_the_task(world):
    regions, journal, workers = world
    await journal.add("copy", "vanished", src="ca", dst="jp")
    await workers.drain()
    assert (await journal.backlog()).pending == 0
    with pytest.raises(NotFound):
        await regions["jp"].head("vanished")


async def test_failures_stay_in_the_journal_with_backoff(world, tmp_path):
    regions, journal, workers = world
    await regions["ca"].put("n", b"x", meta(1))
    regions["jp"] = LocalRegion("/dev/null/down", name="jp")
    await journal.add("copy", "n", src="ca", dst="jp")
    assert await workers.run_once() == 1
    assert await workers.run_once() == 0  # backing off
    backlog = await journal.backlog()
    assert backlog.pending == 1
    text = workers.metrics.exposition().decode()
    assert 'replicator_replicated_total{kind="copy",outcome="retry"} 1.0' in text


async def test_a_corrupt_source_is_not_copied(world, tmp_path):
    regions, journal, workers = world
    ca, jp = regions["ca"], regions["jp"]
    await ca.put("n", b"x" * 1000, meta(1))
    rewrite_stored(ca, "n", lambda _: b"y" * 1000)
    await journal.add("copy", "n", src="ca", dst="jp")
    await workers.run_once()
    with pytest.raises(NotFound):
        await jp.head("n")
    assert (await journal.backlog()).pending == 1


async def test_delete_rows_remove_the_destination_copy(world):
    regions, journal, workers = world
    await regions["jp"].put("n", b"x", meta(1))
    await journal.add("delete", "n", src="ca", dst="jp")
    await workers.drain()
    with pytest.raises(NotFound):
        await regions["jp"].head("n")


async def test_name_locks_serialize_one_name_and_clean_up():
    locks, order = NameLocks(), []

    async def hold(tag, delay):
        async with locks.hold("n"):
            order.append(f"{tag}+")
            await asyncio.sleep(delay)
            order.append(f"{tag}-")

    await asyncio.gather(hold("a", 0.02), hold("b", 0))
    assert order == ["a+", "a-", "b+", "b-"]
    assert locks._locks == {}


async def test_repair_replaces_a_corrupt_copy_of_the_same_version(world):
    regions, journal, workers = world
    ca, jp = regions["ca"], regions["jp"]
    await ca.put("n", b"good" * 100, meta(1))
    await jp.put("n", b"good" * 100, meta(1))
    rewrite_stored(jp, "n", lambda _: b"bad!" * 100)
    assert await copy_newest(ca, jp, "n") == "current"
    await journal.add("repair", "n", src="ca", dst="jp")
    await workers.drain()
    assert await body(jp, "n") == b"good" * 100


@pytest.mark.parametrize("keep, kept", [({"account": 30}, True), ({"account": 0}, False), (None, False)])
async def test_a_copy_keeps_the_older_replica_it_replaces_when_the_class_keeps_versions(world, keep, kept):
    (ca, jp), _, _ = world[0].values(), world[1], world[2]
    await ca.put("n", b"new", meta(2))
    await jp.put("n", b"old", meta(1))
    assert await copy_newest(ca, jp, "n", keep_days=keep, now_ms=lambda: 5) == "copied"
    assert await body(jp, "n") == b"new"
    names = [i.name async for i in jp.list("")]
    if kept:
        assert names == ["n", "n/0000000000000001.00000.n1"]
        info = await jp.head("n/0000000000000001.00000.n1")
        assert ObjectMeta.of(info).superseded_ms == 5 and await body(jp, "n/0000000000000001.00000.n1") == b"old"
    else:
        assert names == ["n"]


async def test_a_finished_copy_observes_the_delay_since_its_version_was_acknowledged(world):
    (ca, _), journal, workers = world[0].values(), world[1], world[2]
    written = int(time.time() * 1000) - 20_000  # acknowledged 20 s ago
    await ca.put("n", b"cipher", meta(written))
    await journal.add("copy", "n", src="ca", dst="jp", version=str(Version(written, 0, "n1")))
    await workers.drain()
    delay = workers.metrics.registry
    assert delay.get_sample_value("replicator_replication_delay_seconds_count", {"region": "jp"}) == 1
    assert delay.get_sample_value("replicator_replication_delay_seconds_bucket", {"region": "jp", "le": "15.0"}) == 0
    assert delay.get_sample_value("replicator_replication_delay_seconds_bucket", {"region": "jp", "le": "30.0"}) == 1
