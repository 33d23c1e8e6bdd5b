"""The journal contract, run against the SQLite journal (PostgreSQL joins in the operations issue)."""

import pytest

from replicator.journal import open_journal
from replicator.journal.sqlite import SqliteJournal


async def test_added_work_is_claimed_once_under_a_lease(journal, clock):
    await journal.add("copy", "v1/a", src="ca", dst="jp", version="v1")
    [task] = await journal.claim("w1", lease=30)
    assert (task.kind, task.name, task.src, task.dst, task.version) == ("copy", "v1/a", "ca", "jp", "v1")
    assert await journal.claim("w2") == []
    clock.t += 31  # w1 died: its lease lapses
    [again] = await journal.claim("w2")
    assert again.id == task.id
    assert await journal.complete(again)
    assert await journal.claim("w3") == [] and (await journal.backlog()).pending == 0


async def test_work_added_during_a_claim_survives_its_completion(journal):
    await journal.add("copy", "n", src="ca", dst="jp", version="v1")
    [task] = await journal.claim("w1")
    await journal.add("copy", "n", src="ca", dst="jp", version="v2")
    assert not await journal.complete(task)
    [again] = await journal.claim("w1")
    assert again.version == "v2" and again.id == task.id
    assert await journal.complete(again)


async def test_rows_coalesce_per_kind_name_and_destination(journal):
    for version in ("v2", "v1", "v3"):
        await journal.add("copy", "n", src="ca", dst="jp", version=version)
    await journal.add("delete", "n", src="ca", dst="jp")
    await journal.add("copy", "n", src="jp", dst="ca", version="v1")
    tasks = await journal.claim("w", limit=10)
    assert sorted((t.kind, t.dst, t.version) for t in tasks) == [
        ("copy", "ca", "v1"), ("copy", "jp", "v3"), ("delete", "jp", "")]


async def test_retry_later_counts_attempts_and_waits(journal, clock):
    await journal.add("delete", "n", src="ca", dst="jp")
    [task] = await journal.claim("w")
    await journal.retry_later(task, "region 'jp': unavailable", delay=10)
    assert await journal.claim("w") == []
    clock.t += 10
    [again] = await journal.claim("w")
    assert again.attempts == 1 and again.last_error == "region 'jp': unavailable"


async def test_rows_survive_reopening(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    j = SqliteJournal(path, clock=clock)
    await j.add("copy", "n", src="ca", dst="jp", version="v1")
    await j.claim("w")  # a claim dies with its process: the lease must not outlive it for long
    await j.close()
    clock.t += 3600
    j = SqliteJournal(path, clock=clock)
    assert [t.name for t in await j.claim("w2")] == ["n"]
    await j.close()


async def test_backlog_reports_count_and_oldest_age(journal, clock):
    assert (await journal.backlog()).pending == 0
    await journal.add("copy", "a", src="ca", dst="jp")
    clock.t += 5
    await journal.add("copy", "b", src="ca", dst="jp")
    backlog = await journal.backlog()
    assert backlog.pending == 2 and backlog.oldest_age == 5


def test_unknown_url_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported journal URL scheme in 'mysql'"):
        open_journal("mysql://db/x")


async def test_erasure_receipts_track_regions_and_survive_reopening(tmp_path, clock):
    path = tmp_path / "j.sqlite3"
    j = SqliteJournal(path, clock=clock)
    er = await j.create_erasure("tagtag", "2026-11-23T00:00:00Z", ["ca", "jp"])
    await j.update_erasure(er.id, "ca", deleted=3, remaining=0)
    await j.close()
    j = SqliteJournal(path, clock=clock)
    [running] = await j.running_erasures()
    assert running.id == er.id and running.regions == {
        "ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 0, "remaining": -1}}
    await j.finish_erasure(er.id)
    assert (await j.erasure(er.id)).state == "done"
    assert await j.running_erasures() == [] and await j.erasure("er_nope") is None
    await j.close()
