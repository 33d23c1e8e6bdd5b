"""The contract every Journal keeps (``replicator/journal/__init__.py``), one suite for every backend.

A backend opts in with a test class that says how to open the test's journal
(fsspec's abstract fixtures and mixins, as ``suite.py`` does for regions)::

    class TestSqliteJournal(JournalConformance):
        @pytest.fixture
        def open_journal(self, tmp_path):
            return lambda clock: SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)

``open_journal(clock)`` opens the same journal each time it is called (the
same file, database or schema), so a test can close it and open it again. The
suite runs each journal on a clock the test moves; a backend-specific test
(migrations, URL parsing, several processes) belongs in the backend's own
module, not here.
"""

from __future__ import annotations

import pytest

from replicator.journal import RegionLag


class FakeClock:
    """Seconds, as ``time.time`` gives them; a test moves ``t`` forward to let leases lapse."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class JournalFixtures:
    @pytest.fixture
    def open_journal(self):
        """A function of ``clock`` that opens the test's journal (again); the backend provides it."""
        raise NotImplementedError("a backend's test class provides the open_journal fixture")

    @pytest.fixture
    def clock(self):
        return FakeClock()

    @pytest.fixture
    async def reopen(self, open_journal, clock):
        """Opens the test's journal (again: the same file or schema), on ``clock``; closes them all at the end."""
        opened = []

        def reopen_journal():
            j = open_journal(clock)
            opened.append(j)
            return j

        yield reopen_journal
        for j in opened:
            await j.close()

    @pytest.fixture
    async def journal(self, reopen):
        return reopen()


class WorkRows(JournalFixtures):
    """add, claim, complete, retry_later, backlog, behind, pending, retry_now, drop."""

    async def test_added_work_is_claimed_once_under_a_lease(self, journal, clock):
        await journal.add("copy", "v1/a", src="ca", dst="jp", version="v1")
        [task] = await journal.claim("w1", lease=30)
        assert (task.kind, task.name, task.src, task.dst, task.version) == ("copy", "v1/a", "ca", "jp", "v1")
        assert await journal.claim("w2") == []
        clock.t += 31  # w1 died: its lease lapses
        [again] = await journal.claim("w2")
        assert again.id == task.id
        assert await journal.complete(again)
        assert await journal.claim("w3") == [] and (await journal.backlog()).pending == 0

    async def test_work_added_during_a_claim_survives_its_completion(self, journal):
        await journal.add("copy", "n", src="ca", dst="jp", version="v1")
        [task] = await journal.claim("w1")
        await journal.add("copy", "n", src="ca", dst="jp", version="v2")
        assert not await journal.complete(task)
        [again] = await journal.claim("w1")
        assert again.version == "v2" and again.id == task.id
        assert await journal.complete(again)

    async def test_rows_coalesce_per_kind_name_and_destination(self, journal):
        for version in ("v2", "v1", "v3"):
            await journal.add("copy", "n", src="ca", dst="jp", version=version)
        await journal.add("delete", "n", src="ca", dst="jp")
        await journal.add("copy", "n", src="jp", dst="ca", version="v1")
        tasks = await journal.claim("w", limit=10)
        assert sorted((t.kind, t.dst, t.version) for t in tasks) == [
            ("copy", "ca", "v1"),
            ("copy", "jp", "v3"),
            ("delete", "jp", ""),
        ]

    async def test_retry_later_counts_attempts_and_waits(self, journal, clock):
        await journal.add("delete", "n", src="ca", dst="jp")
        [task] = await journal.claim("w")
        await journal.retry_later(task, "region 'jp': unavailable", delay=10)
        assert await journal.claim("w") == []
        clock.t += 10
        [again] = await journal.claim("w")
        assert again.attempts == 1 and again.last_error == "region 'jp': unavailable"

    async def test_rows_survive_reopening(self, reopen, clock):
        j = reopen()
        await j.add("copy", "n", src="ca", dst="jp", version="v1")
        await j.claim("w")  # a claim dies with its process: the lease must not outlive it for long
        await j.close()
        clock.t += 3600
        j = reopen()
        assert [t.name for t in await j.claim("w2")] == ["n"]

    async def test_backlog_reports_count_and_oldest_age(self, journal, clock):
        assert (await journal.backlog()).pending == 0
        await journal.add("copy", "a", src="ca", dst="jp")
        clock.t += 5
        await journal.add("copy", "b", src="ca", dst="jp")
        backlog = await journal.backlog()
        assert backlog.pending == 2 and backlog.oldest_age == 5

    async def test_lag_reports_rows_bytes_and_oldest_age_per_destination(self, journal, clock):
        assert await journal.lag() == []
        await journal.add("copy", "a", src="ca", dst="jp", size=100)
        clock.t += 5
        await journal.add("copy", "b", src="ca", dst="jp", size=20)
        await journal.add("delete", "c", src="jp", dst="ca")
        await journal.add("copy", "a", src="ca", dst="jp", size=300)  # coalesced: the latest size counts
        clock.t += 2
        assert await journal.lag() == [RegionLag("ca", 1, 0, 2.0), RegionLag("jp", 2, 320, 7.0)]
        for task in await journal.claim("w"):
            await journal.complete(task)
        assert await journal.lag() == []

    async def test_behind_names_the_regions_owed_work_on_a_name(self, journal):
        assert await journal.behind("a") == set()
        await journal.add("copy", "a", src="ca", dst="jp")
        await journal.add("delete", "a", src="jp", dst="ca")
        await journal.add("repair", "b", src="ca", dst="jp")
        assert await journal.behind("a") == {"ca", "jp"} and await journal.behind("b") == {"jp"}
        for task in await journal.claim("w"):
            await journal.complete(task)
        assert await journal.behind("a") == set()

    async def test_a_slow_worker_never_disturbs_the_row_another_re_claimed(self, journal, clock):
        await journal.add("copy", "n", src="ca", dst="jp", version="v1")
        [slow] = await journal.claim("w1", lease=10)
        clock.t += 11
        [fast] = await journal.claim("w2", lease=10)
        assert fast.owner == "w2" and slow.owner == "w1"
        await journal.retry_later(slow, "late failure", delay=100)  # w1's lease is gone: ignored
        assert await journal.claim("w3") == []
        total, [row] = await journal.pending()
        assert total == 1 and row.leased_by == "w2" and row.attempts == 0 and row.last_error == ""
        assert await journal.complete(slow)  # the claimed generation's work is done, whoever finishes it
        assert not await journal.complete(fast) and (await journal.backlog()).pending == 0

    async def test_pending_lists_rows_by_next_try_with_attempts_and_errors(self, journal, clock):
        for name in ("a", "b", "c"):
            await journal.add("copy", f"v1/{name}", src="ca", dst="jp", version="v1")
        await journal.add("delete", "v1/a", src="jp", dst="ca")
        [first] = await journal.claim("w", limit=1)
        await journal.retry_later(first, "Unavailable: region 'jp'", delay=30)
        total, rows = await journal.pending()
        assert total == 4 and [r.name for r in rows][-1] == first.name
        late = rows[-1]
        assert (late.attempts, late.last_error, late.next_try, late.leased_by) == (
            1,
            "Unavailable: region 'jp'",
            clock.t + 30,
            "",
        )
        assert late.created == clock.t
        total, rows = await journal.pending(dst="ca")
        assert total == 1 and [(r.kind, r.name) for r in rows] == [("delete", "v1/a")]
        total, rows = await journal.pending(limit=2)
        assert total == 4 and len(rows) == 2
        assert (await journal.pending(ids=[]))[0] == 0

    async def test_retry_now_makes_rows_due_and_drop_removes_them(self, journal, clock):
        for name in ("a", "b"):
            await journal.add("copy", name, src="ca", dst="jp")
        await journal.add("copy", "c", src="jp", dst="ca")
        for task in await journal.claim("w", limit=10):
            await journal.retry_later(task, "Unavailable", delay=600)
        assert await journal.claim("w") == []
        _, rows = await journal.pending(dst="jp")
        a = next(r for r in rows if r.name == "a")
        assert await journal.retry_now(ids=[a.id]) == 1
        assert [t.name for t in await journal.claim("w", limit=10)] == ["a"]
        assert await journal.retry_now(dst="ca") == 1
        assert [t.name for t in await journal.claim("w", limit=10)] == ["c"]
        assert await journal.retry_now(ids=[999_999]) == 0
        assert await journal.drop(ids=[a.id]) == 1 and await journal.drop(ids=[a.id]) == 0
        assert await journal.drop(dst="jp") == 1  # b
        assert await journal.drop() == 1  # c, the last
        assert (await journal.backlog()).pending == 0


class ErasureReceipts(JournalFixtures):
    """create_erasure, update_erasure, finish_erasure, erasure, running_erasures."""

    async def test_erasure_receipts_track_regions_and_survive_reopening(self, reopen):
        j = reopen()
        er = await j.create_erasure("tagtag", "2026-11-23T00:00:00Z", ["ca", "jp"])
        await j.update_erasure(er.id, "ca", deleted=3, remaining=0)
        await j.close()
        j = reopen()
        [running] = await j.running_erasures()
        assert running.id == er.id and running.regions == {
            "ca": {"deleted": 3, "remaining": 0},
            "jp": {"deleted": 0, "remaining": -1},
        }
        await j.finish_erasure(er.id)
        assert (await j.erasure(er.id)).state == "done"
        assert await j.running_erasures() == [] and await j.erasure("er_nope") is None


class ReconcileLeases(JournalFixtures):
    """The reconciler's partition leases: acquire_lease, renew_lease, release_lease."""

    async def test_one_owner_at_a_time_and_a_dead_owner_expires(self, journal, clock):
        assert await journal.acquire_lease("p1", "w1", 60)
        assert not await journal.acquire_lease("p1", "w2", 60)
        assert await journal.acquire_lease("p2", "w2", 60)  # another partition
        assert await journal.acquire_lease("p1", "w1", 60)  # the holder again: extended
        clock.t += 59
        assert not await journal.acquire_lease("p1", "w2", 60)
        clock.t += 2  # w1 died without releasing
        assert await journal.acquire_lease("p1", "w2", 60)
        assert not await journal.renew_lease("p1", "w1", 60)  # w1 lost it
        assert await journal.renew_lease("p1", "w2", 60)

    async def test_renewing_keeps_the_lease(self, journal, clock):
        assert await journal.acquire_lease("p", "w1", 30)
        for _ in range(5):
            clock.t += 20
            assert await journal.renew_lease("p", "w1", 30)
            assert not await journal.acquire_lease("p", "w2", 30)

    async def test_release_frees_only_the_owners_lease(self, journal):
        assert await journal.acquire_lease("p", "w1", 60)
        await journal.release_lease("p", "w2")
        assert not await journal.acquire_lease("p", "w2", 60)
        await journal.release_lease("p", "w1")
        assert await journal.acquire_lease("p", "w2", 60)


class Checkpoints(JournalFixtures):
    """The reconciler's resume points: save_checkpoint, load_checkpoint, clear_checkpoint."""

    async def test_checkpoint_round_trip_survives_reopening(self, journal, reopen):
        assert await journal.load_checkpoint("k") is None
        await journal.save_checkpoint("k", "v1/a")
        await journal.save_checkpoint("k", "v1/b")
        await journal.save_checkpoint("other", "v1/z")
        again = reopen()
        try:
            assert await again.load_checkpoint("k") == "v1/b"
        finally:
            await again.close()
        await journal.clear_checkpoint("k")
        assert await journal.load_checkpoint("k") is None
        assert await journal.load_checkpoint("other") == "v1/z"


class JournalConformance(WorkRows, ErasureReceipts, ReconcileLeases, Checkpoints):
    """Every part of the contract: what a backend's test class derives from."""
