"""The SQLite journal (the embedded default) through the journal conformance suite."""

import asyncio
import sqlite3

import pytest

from replicator.journal.sqlite import SqliteJournal

from .journal_suite import JournalConformance


class TestSqliteJournal(JournalConformance):
    @pytest.fixture
    def open_journal(self, tmp_path):
        return lambda clock: SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)


async def test_behind_reads_beside_an_open_write_without_waiting_for_it(tmp_path):
    """A read's question does not queue behind a writer's transaction (WAL), and sees only what
    was committed before it."""
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    try:
        await journal.add("copy", "v1/c/account/n", src="ca", dst="jp")
        writer = sqlite3.connect(journal.path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # held, as during a slow commit
        writer.execute(
            "INSERT INTO tasks (kind, name, src, dst, version, created, next_try) "
            "VALUES ('repair', 'v1/c/account/n', 'jp', 'ca', '', 0, 0)"
        )
        try:
            assert await asyncio.wait_for(journal.behind("v1/c/account/n"), 1) == {"jp"}
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert await journal.behind("v1/c/account/other") == set()
    finally:
        await journal.close()
