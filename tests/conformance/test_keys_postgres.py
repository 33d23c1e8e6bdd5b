"""The PostgreSQL key store through the key-provider conformance suite: the dev stack's server, a schema per test.

What only the shared store has to show (the database away, nodes at once) is in
``tests/integration/test_keystore_pg.py``.
"""

import asyncio

import pytest

from keys.provider import AsyncKeyReads, KeyDestroyed, UnknownKey
from replicator.keystore import PgKeyStore
from tests.support.calls import Calls
from tests.support.pg import backup_tables, connect, drop_schema, fresh_url, restore_tables
from tests.support.stack import stack_fixture

from .keys_suite import OTHER, PASS, KeyProviderConformance


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

    def test_a_dek_made_before_name_keys_gets_one_on_its_next_write_once(self, store):
        node = store.open(PASS)
        dek = node.get_or_create_dek("alice")
        asyncio.run(store._query(lambda c: c.execute("UPDATE key_deks SET name_key = NULL")))  # as before migration 2
        old = store.open(PASS)
        with pytest.raises(UnknownKey, match="no name key"):  # no name was ever sealed under one
            old.get_name_key(dek.dek_id)
        old.rotate_kek(OTHER)  # a DEK without a name key rotates as before
        old.finish_rotation()
        again = store.open(OTHER).get_or_create_dek("alice")
        assert (again.dek_id, again.key) == (dek.dek_id, dek.key) and len(again.name_key) == 32
        for handle in (old, store.open(OTHER)):
            assert handle.get_name_key(dek.dek_id) == again.name_key
            assert handle.get_or_create_dek("alice").name_key == again.name_key

    def test_the_awaited_calls_answer_and_refuse_as_the_synchronous_ones(self, store):
        node, peer = store.open(PASS), store.open(PASS)
        assert isinstance(node, AsyncKeyReads)

        async def on_another_loop():  # as the service calls them: from its own event loop
            dek = await node.get_or_create_dek_async("alice")
            for again in (peer.get_or_create_dek("alice"), await node.get_or_create_dek_async("alice")):
                assert (again.dek_id, again.key, again.name_key) == (dek.dek_id, dek.key, dek.name_key)
            assert await peer.keys_for_read_async("alice", dek.dek_id) == (dek.key, dek.name_key)
            with pytest.raises(UnknownKey, match="malformed"):
                await node.keys_for_read_async("alice", "../../etc/passwd")
            when = peer.destroy("alice")
            for call in (node.get_or_create_dek_async("alice"), node.keys_for_read_async("alice", dek.dek_id)):
                with pytest.raises(KeyDestroyed) as info:
                    await call
                assert info.value.destroyed_at == when

        asyncio.run(on_another_loop())

    def test_concurrent_awaited_reads_share_a_query_and_each_sees_an_erasure_that_returned(self, store):
        node = store.open(PASS)
        deks = {c: node.get_or_create_dek(c) for c in ("alice", "bob")}
        queries = Calls(node, "_acall")

        async def reads():
            return await asyncio.gather(
                *(node.keys_for_read_async(c, deks[c].dek_id) for c in ["alice", "bob"] * 16),
                *(node.get_or_create_dek_async(c) for c in ["alice", "bob"] * 4),
                return_exceptions=True,
            )

        async def run():
            before = await reads()
            assert [k for k, _ in before[:32]] == [deks[c].key for c in ["alice", "bob"] * 16]
            assert [d.dek_id for d in before[32:]] == [deks[c].dek_id for c in ["alice", "bob"] * 4]
            assert queries.count <= 4  # 40 reads; alone, 40 queries
            await asyncio.to_thread(node.destroy, "alice")  # returned: every read begun after sees it
            after = await reads()
            alice = [r for r, c in zip(after, ["alice", "bob"] * 20, strict=True) if c == "alice"]
            assert all(isinstance(r, KeyDestroyed) for r in alice)
            assert not any(isinstance(r, BaseException) for r in after[1:32:2] + after[33::2])

        asyncio.run(run())
