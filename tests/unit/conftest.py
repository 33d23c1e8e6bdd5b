"""Fixtures shared by the unit tests: a journal on a clock the test moves, on SQLite and on PostgreSQL.

The PostgreSQL journal is the dev stack's server (``tests.support.stack``), each test
in a schema of its own that is dropped afterwards.
"""

import pytest

from replicator.journal.postgres import PgJournal
from replicator.journal.sqlite import SqliteJournal
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import STACK


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=STACK)])
async def reopen(request, tmp_path, clock):
    """Opens the test's journal (again: the same file or schema), on ``clock``; closes them all at the end."""
    url = fresh_url() if request.param == "postgresql" else None
    opened = []

    def open_journal():
        j = PgJournal(url, clock=clock) if url else SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
        opened.append(j)
        return j

    yield open_journal
    for j in opened:
        await j.close()
    if url:
        await drop_schema(url)


@pytest.fixture
async def journal(reopen):
    return reopen()
