"""The PostgreSQL journal through the journal conformance suite: the dev stack's server, a schema per test.

What only PostgreSQL has to show (several processes, the server's clock, migrations, errors) is in
``tests/unit/replicator/test_journal_pg.py`` and ``tests/integration/test_pg_journal_*.py``.
"""

from replicator.journal.postgres import PgJournal
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import stack_fixture

from .journal_suite import JournalConformance


class TestPgJournal(JournalConformance):
    @stack_fixture
    async def open_journal(self):
        url = fresh_url()
        yield lambda clock: PgJournal(url, clock=clock)
        await drop_schema(url)
