"""Fixtures shared by the unit tests: a journal on a clock the test moves."""

import pytest

from replicator.journal.sqlite import SqliteJournal


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def journal(tmp_path, clock):
    j = SqliteJournal(tmp_path / "journal.sqlite3", clock=clock)
    yield j
    await j.close()
