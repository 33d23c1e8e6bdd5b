"""The executor over two local regions: each kind of action done for real, re-checks, limits, resume."""

import asyncio
import hashlib

import pytest

from regions import Unavailable
from regions.local import LocalRegion
from replicator.hlc import Version
from replicator.reconcile.executor import Readahead, Reconciler, Watermark, listed_ahead
from replicator.replication import NameLocks
from tests.support.localstore import flip_byte, rewrite_stored
from tests.support.seed import DAY_MS, path, put_live, put_tomb, state

NOW = 1_900_000_000_000
RETENTION = {"account": None, "visit": 90}


def v(n: int) -> Version:
    return Version(NOW - DAY_MS + n, 0, "n1")


@pytest.fixture
async def regions(tmp_path):
    a, b = LocalRegion(tmp_path / "ca", name="ca"), LocalRegion(tmp_path / "jp", name="jp")
    yield a, b
    await a.close()
    await b.close()


def reconciler(a, b, **kw) -> Reconciler:
    kw.setdefault("now_ms", NOW)
    kw.setdefault("retention", RETENTION)
    kw.setdefault("destroyed", {"dek_gone"})
    kw.setdefault("grace_ms", 7 * DAY_MS)
    return Reconciler(a, b, **kw)


async def body(region, name):
    _, stream = await region.get(name)
    return b"".join([c async for c in stream])


def flip(region: LocalRegion, name: str) -> None:
    """Change stored bytes behind the driver's back (the digest in the index stays)."""
    rewrite_stored(region, name, flip_byte(lambda n: 0))


async def test_every_kind_of_divergence_is_levelled(regions):
    a, b = regions
    n = {
        k: path("c1", k)
        for k in (
            "missing",
            "stale",
            "tomb_over_live",
            "lone_tomb",
            "newer_after_delete",
            "same",
            "old_tombs",
            "repair",
        )
    }
    visit = path("c2", "old-visit", "visit")
    shred = path("c3", "erased")
    missing = await put_live(a, n["missing"], v(1))
    newer = await put_live(b, n["stale"], v(2))
    await put_live(a, n["stale"], v(1))
    await put_live(a, n["tomb_over_live"], v(1))
    await put_tomb(b, n["tomb_over_live"], v(2))
    await put_tomb(b, n["lone_tomb"], v(3))
    await put_tomb(a, n["newer_after_delete"], v(1))
    after = await put_live(b, n["newer_after_delete"], v(2))
    same = await put_live(a, n["same"], v(1))
    await b.put(n["same"], same, (await a.head(n["same"])).meta)
    for r in (a, b):
        await put_tomb(r, n["old_tombs"], v(1), written_ms=NOW - 8 * DAY_MS)
        await put_live(r, visit, v(1), data_class="visit", written_ms=NOW - 91 * DAY_MS)
        await put_live(r, shred, v(1), dek="dek_gone")
    good = await put_live(a, n["repair"], v(1))
    await put_live(b, n["repair"], v(1), body=b"not the same bytes")
    flip(b, n["repair"])  # B now fails its own digest, which differs from A's

    report = await reconciler(a, b, concurrency=3).run(["v1/"])

    assert report.error_count == 0, report.errors
    done = {k: c["done"] for k, c in report.counts.items() if c["done"]}
    assert done == {"copy": 3, "copy_tombstone": 1, "delete": 1, "repair": 1, "expire": 2, "shred": 2, "purge": 2}
    sa, sb = await state(a), await state(b)
    assert sa == sb
    assert await body(b, n["missing"]) == missing
    assert await body(a, n["stale"]) == newer
    assert await body(a, n["newer_after_delete"]) == after
    assert await body(b, n["repair"]) == good
    assert sa[n["tomb_over_live"]][2] and sa[n["lone_tomb"]][2]
    for gone in (visit, shred, n["old_tombs"]):
        assert gone not in sa
    assert report.bytes_copied == 64 * 4 and report.exit_code == 0
    # A second run finds nothing to do.
    again = await reconciler(a, b).run(["v1/"])
    assert again.planned_total == 0 and again.names == len(sa)


async def test_dry_run_changes_nothing_and_names_each_action(regions):
    a, b = regions
    name = path("c", "x")
    await put_live(a, name, v(1))
    before = (await state(a), await state(b))
    report = await reconciler(a, b, dry_run=True).run(["v1/"])
    assert (await state(a), await state(b)) == before
    assert report.actions == [{"action": "copy", "name": name, "from": "ca", "to": "jp"}]
    assert report.counts["copy"] == {"planned": 1, "done": 0, "skipped": 0, "failed": 0}
    assert report.bytes_planned == 64 and report.bytes_copied == 0 and report.exit_code == 0


async def test_both_replicas_verifying_with_different_digests_is_reported_not_guessed(regions):
    a, b = regions
    name = path("c", "twins")
    x = await put_live(a, name, v(1))
    y = await put_live(b, name, v(1))
    report = await reconciler(a, b).run(["v1/"])
    assert report.counts["repair"]["failed"] == 1 and report.exit_code == 1
    assert "decrypt" in report.errors[0]["error"] and report.errors[0]["name"] == name
    assert (await body(a, name), await body(b, name)) == (x, y)


async def test_neither_replica_verifying_is_a_failure(regions):
    a, b = regions
    name = path("c", "bad")
    await put_live(a, name, v(1))
    await put_live(b, name, v(1))
    flip(a, name)
    flip(b, name)
    report = await reconciler(a, b).run(["v1/"])
    assert report.counts["repair"]["failed"] == 1 and "neither" in report.errors[0]["error"]


async def test_a_corrupt_source_is_never_copied(regions):
    a, b = regions
    name = path("c", "rotten")
    await put_live(a, name, v(2))
    old = await put_live(b, name, v(1))
    flip(a, name)  # listings cannot see this: the copy's read does
    report = await reconciler(a, b).run(["v1/"])
    assert report.counts["copy"]["failed"] == 1 and report.errors[0]["error"].startswith("Corrupt")
    assert await body(b, name) == old


async def test_a_conflict_is_reported_and_left(regions):
    a, b = regions
    name = path("c", "conflict")
    await put_live(a, name, v(1))
    await put_tomb(b, name, v(1))
    report = await reconciler(a, b).run(["v1/"])
    assert report.counts["conflict"] == {"planned": 1, "done": 0, "skipped": 0, "failed": 1}
    assert report.exit_code == 1


async def test_objects_not_written_by_the_replicator_are_left_alone(regions):
    a, b = regions
    await a.put("v1/foreign/x", b"theirs", {"owner": "someone"})
    report = await reconciler(a, b).run(["v1/"])
    assert report.error_count == 1 and "left alone" in report.errors[0]["error"]
    assert await state(b) == {}


class Racing:
    """A region where another writer lands on ``name`` just before the reconciler's re-check."""

    def __init__(self, inner, name, write):
        self.inner, self.name, self._target, self._write = inner, inner.name, name, write
        self.raced = False

    async def head(self, name):
        if name == self._target and not self.raced:
            self.raced = True
            await self._write(self.inner)
        return await self.inner.head(name)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


@pytest.mark.parametrize("kind", ["overwrite", "delete", "purge"])
async def test_a_write_that_races_the_reconciler_is_never_lost(regions, kind):
    a, b = regions
    name = path("c", "raced")
    if kind == "overwrite":  # plan: copy A's v2 over B's v1
        await put_live(a, name, v(2))
        await put_live(b, name, v(1))
    elif kind == "delete":  # plan: tombstone over B's live v1
        await put_tomb(a, name, v(2))
        await put_live(b, name, v(1))
    else:  # plan: purge both old tombstones
        for r in (a, b):
            await put_tomb(r, name, v(1), written_ms=NOW - 30 * DAY_MS)
    racer = Racing(b, name, lambda r: put_live(r, name, v(9), body=b"the racing write"))
    report = await reconciler(a, racer).run(["v1/"])
    assert racer.raced
    assert await body(b, name) == b"the racing write"
    assert sum(c["skipped"] for c in report.counts.values()) >= 1 and report.error_count == 0


async def test_a_copy_onto_an_absent_name_never_lands_on_a_racing_create(regions):
    a, b = regions
    name = path("c", "created")
    await put_live(a, name, v(1))

    class CreateBeforePut:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        async def put(self, n, data, meta, **conditions):
            await put_live(self.inner, n, v(5), body=b"created meanwhile")
            return await self.inner.put(n, data, meta, **conditions)

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    report = await reconciler(a, CreateBeforePut(b)).run(["v1/"])
    assert report.counts["copy"]["skipped"] == 1
    assert await body(b, name) == b"created meanwhile"


async def test_name_locks_are_held_around_each_name(regions):
    a, b = regions
    name = path("c", "locked")
    await put_live(a, name, v(2))
    await put_live(b, name, v(1))
    locks = NameLocks()
    async with locks.hold(name):
        run = asyncio.ensure_future(reconciler(a, b, locks=locks).run(["v1/"]))
        await asyncio.sleep(0.2)
        assert not run.done()  # waits for the writer holding the lock
        await put_live(b, name, v(7), body=b"written under the lock")
    report = await run
    assert report.counts["copy"]["skipped"] == 1
    assert await body(b, name) == b"written under the lock"


async def test_max_delete_stops_before_the_name_that_would_pass_it(regions):
    a, b = regions
    names = sorted((path(f"c{i}", "v", "visit") for i in range(5)), key=str.encode)
    for name in names:
        for r in (a, b):
            await put_live(r, name, v(1), data_class="visit", written_ms=NOW - 100 * DAY_MS)
    report = await reconciler(a, b, max_delete=3, concurrency=1).run(["v1/"])
    assert report.stopped == "max-delete" and report.exit_code == 1
    assert report.deletes == 2 and report.counts["expire"]["done"] == 2
    assert report.checkpoint == names[0]
    assert len(await state(a)) == 4
    dry = await reconciler(a, b, max_delete=3, dry_run=True).run(["v1/"])
    assert dry.stopped == "max-delete" and dry.counts["expire"]["planned"] == 2


async def test_a_tombstone_over_a_live_object_counts_as_a_delete(regions):
    a, b = regions
    name = path("c", "t")
    await put_tomb(a, name, v(2))
    await put_live(b, name, v(1))
    report = await reconciler(a, b, max_delete=0).run(["v1/"])
    assert report.stopped == "max-delete" and not (await b.head(name)).meta.get("tomb")


class BreaksAfter:
    """A region whose listing fails after ``n`` entries (a crash half-way through a run)."""

    def __init__(self, inner, n):
        self.inner, self.name, self.n = inner, inner.name, n

    async def list(self, prefix=""):
        seen = 0
        async for info in self.inner.list(prefix):
            if seen == self.n:
                raise Unavailable("listing broke", region=self.name)
            seen += 1
            yield info

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


async def test_resume_continues_after_the_checkpoint(regions):
    a, b = regions
    names = sorted((path(f"c{i}", "x") for i in range(40)), key=str.encode)
    for name in names:
        await put_live(a, name, v(1))
    saved = []

    async def save(mark):
        saved.append(mark)

    first = await reconciler(BreaksAfter(a, 25), b, concurrency=4, on_checkpoint=save, checkpoint_every=0).run(["v1/"])
    assert first.stopped == "listing-failed" and first.exit_code == 1
    assert first.checkpoint == names[24] and saved and saved[-1] <= first.checkpoint
    assert len(await state(b)) == 25
    second = await reconciler(a, b).run(["v1/"], after=first.checkpoint)
    assert second.names == 15 and second.counts["copy"]["done"] == 15
    assert await state(a) == await state(b)


def test_watermark_only_passes_names_whose_work_is_done():
    w = Watermark()
    w.clean("a")
    s1 = w.start("b")
    w.clean("c")
    s2 = w.start("d")
    w.clean("e")
    assert w.mark == "a"
    w.finish(s2)
    assert w.mark == "a"
    w.finish(s1)
    assert w.mark == "e"
    w.clean("f")
    assert w.mark == "f"


async def test_concurrency_is_bounded(regions):
    a, b = regions
    for i in range(30):
        await put_live(a, path(f"c{i}", "x"), v(1))
    running = peak = 0

    class Counting:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        async def get(self, name):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            try:
                return await self.inner.get(name)
            finally:
                running -= 1

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    report = await reconciler(Counting(a), b, concurrency=4).run(["v1/"])
    assert report.counts["copy"]["done"] == 30 and 1 < peak <= 4


async def test_readahead_passes_errors_and_stops_its_task():
    async def items():
        for i in range(1000):
            yield i
        raise Unavailable("gone", region="x")

    got = []
    with pytest.raises(Unavailable):
        async for i in Readahead(items(), batch=7, depth=2):
            got.append(i)
    assert got == list(range(1000))
    pumped = []

    async def endless():
        i = 0
        while True:
            pumped.append(i)
            yield i
            i += 1

    early = Readahead(endless(), batch=7, depth=2)
    assert [await anext(early) for _ in range(3)] == [0, 1, 2]
    await early.aclose()
    await asyncio.sleep(0.01)
    assert len(pumped) <= 7 * 4  # read ahead at most batch * (depth + a batch being filled + one taken)


class Listings:
    """A region whose listings are numbers; it records which prefixes were listed and which are open."""

    def __init__(self, name, count=3):
        self.name, self.count, self.started, self.open = name, count, [], set()

    async def list(self, prefix):
        self.started.append(prefix)
        self.open.add(prefix)
        try:
            for i in range(self.count):
                yield f"{prefix}{i}"
        finally:
            self.open.discard(prefix)


async def test_prefixes_are_listed_in_order_a_bounded_few_ahead_and_closed():
    a, b = Listings("ca"), Listings("jp")
    prefixes = [f"v1/{c}" for c in "234567ab"]
    walked = []
    async for prefix, (x, y) in listed_ahead([a, b], prefixes, ahead=2):
        await asyncio.sleep(0.01)  # the walk is slower than the listings: they run ahead
        assert len(a.started) <= prefixes.index(prefix) + 3  # this one and two ahead, no more
        walked.append((prefix, [i async for i in x], [i async for i in y]))
    assert walked == [(p, [f"{p}{i}" for i in range(3)], [f"{p}{i}" for i in range(3)]) for p in prefixes]
    assert a.started == b.started == prefixes

    a, b = Listings("ca", count=100_000), Listings("jp", count=100_000)  # more than a readahead holds
    early = listed_ahead([a, b], prefixes, ahead=2)
    prefix, _ = await anext(early)
    await asyncio.sleep(0.01)
    assert prefix == "v1/2" and a.started == prefixes[:3] and a.open == set(prefixes[:3])
    await early.aclose()  # a walk that stops closes every listing it started
    assert a.open == b.open == set() and a.started == prefixes[:3]


async def test_streams_large_objects_without_buffering(regions):
    a, b = regions
    name = path("c", "big")
    data = hashlib.sha256(b"x").digest() * (3 * 1024 * 1024 // 32)
    await put_live(a, name, v(1), body=data)
    report = await reconciler(a, b).run(["v1/"])
    assert report.bytes_copied == len(data) and await body(b, name) == data


class FailsDeleteOnce:
    def __init__(self, inner):
        self.inner, self.name, self.failed = inner, inner.name, False

    async def delete(self, name, **conditions):
        if not self.failed:
            self.failed = True
            raise Unavailable("injected", region=self.name, name=name)
        await self.inner.delete(name, **conditions)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


@pytest.mark.parametrize("failing", ["loser", "winner"])
async def test_an_expiry_that_stops_half_way_never_leaves_an_older_replica_newest(regions, failing):
    # Found by the stateful test: expiring the winner first, then failing on an older tombstone,
    # left that tombstone as the newest replica.
    a, b = regions
    name = path("c", "v", "visit")
    await put_live(a, name, v(2), data_class="visit", written_ms=NOW - 100 * DAY_MS)
    await put_tomb(b, name, v(1))
    wrapped = (a, FailsDeleteOnce(b)) if failing == "loser" else (FailsDeleteOnce(a), b)
    report = await reconciler(*wrapped).run(["v1/"])
    assert report.counts["expire"]["failed"] == 1 and report.counts["expire"]["done"] == (failing == "winner")
    assert report.counts["expire"]["skipped"] == (failing == "loser")
    newest = max(x for x in ((await state(a)).get(name), (await state(b)).get(name)) if x)
    assert newest[0] == str(v(2)) and not newest[2]  # the expired winner is still what remains newest
    again = await reconciler(a, b).run(["v1/"])
    assert again.error_count == 0 and await state(a) == await state(b) == {}
