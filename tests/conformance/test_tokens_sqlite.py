"""The token store in the journal's SQLite file through the token store suite."""

import sqlite3

import pytest

from replicator.tokens import open_token_store

from .tokens_suite import TokenStoreConformance


class TestSqliteTokens(TokenStoreConformance):
    @pytest.fixture
    def journal_url(self, tmp_path):
        return f"sqlite:///{tmp_path / 'journal.sqlite3'}"


async def test_its_tables_have_their_own_version_table(tmp_path):
    store = open_token_store(f"sqlite:///{tmp_path / 'journal.sqlite3'}")
    await store.close()
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert db.execute("SELECT version FROM tokens_version").fetchall() == [(1,)]
