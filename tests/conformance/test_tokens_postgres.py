"""The token store on PostgreSQL through the token store suite: the dev stack's server, a schema per
test shared with a journal, each with its own migrations and version table."""

from replicator.journal.pgschema import LATEST
from replicator.journal.postgres import PgJournal
from replicator.tokens import open_token_store
from tests.support.pg import connect, drop_schema, fresh_url
from tests.support.stack import stack_fixture

from .tokens_suite import TokenStoreConformance


class TestPgTokens(TokenStoreConformance):
    @stack_fixture
    async def journal_url(self):
        url = fresh_url()
        yield url
        await drop_schema(url)


@stack_fixture
async def shared_url():
    url = fresh_url()
    yield url
    await drop_schema(url)


async def test_it_never_takes_a_journal_migration_number(shared_url):
    journal, store = PgJournal(shared_url), open_token_store(shared_url)
    try:
        await journal.backlog()
        await store.records()
    finally:
        await store.close()
        await journal.close()
    conn = await connect(shared_url)
    try:
        assert [r[0] for r in await conn.fetch("SELECT version FROM tokens_version")] == [1]
        assert max(r[0] for r in await conn.fetch("SELECT version FROM schema_version")) == LATEST
    finally:
        await conn.close()
