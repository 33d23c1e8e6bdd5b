"""The PostgreSQL key store through the key-provider conformance suite: the dev stack's server, a schema per test.

What only the shared store has to show (the database away, nodes at once) is in
``tests/integration/test_keystore_pg.py``.
"""

import asyncio

from replicator.keystore import PgKeyStore
from tests.support.pg import backup_tables, connect, drop_schema, fresh_url, restore_tables
from tests.support.stack import stack_fixture

from .keys_suite import KeyProviderConformance


class _Database:
    def __init__(self, url):
        self.url = url
        self.handles = []

    def open(self, kek, create=True):
        handle = PgKeyStore.open(self.url, kek, create=create)
        self.handles.append(handle)
        return handle

    def backup(self):
        return asyncio.run(self._query(backup_tables))

    def restore(self, snapshot):
        asyncio.run(self._query(lambda c: restore_tables(c, snapshot)))

    async def _query(self, fn):
        conn = await connect(self.url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    def close(self):
        for handle in self.handles:
            handle.close()


class TestPgKeyStore(KeyProviderConformance):
    @stack_fixture
    def store(self):
        db = _Database(fresh_url("keys"))
        yield db
        db.close()
        asyncio.run(drop_schema(db.url))
