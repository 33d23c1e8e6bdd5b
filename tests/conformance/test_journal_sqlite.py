"""The SQLite journal (the embedded default) through the journal conformance suite."""

import pytest

from replicator.journal.sqlite import SqliteJournal

from .journal_suite import JournalConformance


class TestSqliteJournal(JournalConformance):
    @pytest.fixture
    def open_journal(self, tmp_path):
        return lambda clock: SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
