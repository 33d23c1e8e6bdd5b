"""The contract every token store keeps (``replicator/tokens/store.py``), one suite for SQLite and
PostgreSQL. A backend opts in with a class giving ``journal_url``: the journal's URL, beside which the
token store lives (the same file, or the same database schema), so the suite also shows that the two
share it without touching each other's tables or migration numbers."""

from __future__ import annotations

import asyncio
import time

import pytest

from keys import generate_token
from replicator.journal import open_journal
from replicator.tokens import TokenRecord, TokenStoreError, new_token_id, open_token_store
from replicator.tokens.index import Refused, TokenIndex


def record(principal="batch", **kw) -> tuple[str, TokenRecord]:
    token, digest = generate_token()
    return token, TokenRecord(new_token_id(), principal, digest, ("write:account",), time.time(), **kw)


class TokenStoreConformance:
    @pytest.fixture
    def journal_url(self):
        raise NotImplementedError("a backend's test class provides the journal_url fixture")

    async def test_create_list_revoke_each_move_the_generation_once(self, journal_url):
        store = open_token_store(journal_url)
        try:
            start = await store.generation()
            _, first = record(expires_at=time.time() + 60, client_subject="CN=batch")
            await store.create(first)
            assert await store.generation() == start + 1
            assert await store.records() == [first]
            with pytest.raises(TokenStoreError, match="exists"):
                await store.create(first)
            assert await store.generation() == start + 1  # the failed create changed nothing
            revoked = await store.revoke(first.token_id, 123.0)
            assert revoked is not None and revoked.revoked_at == 123.0
            again = await store.revoke(first.token_id, 456.0)  # revoking twice keeps the first time
            assert again is not None and again.revoked_at == 123.0
            assert await store.generation() == start + 2
            assert await store.revoke("tok_missing", 1.0) is None
        finally:
            await store.close()
        reopened = open_token_store(journal_url)  # nothing migrates twice; the records stay
        try:
            assert [r.revoked_at for r in await reopened.records()] == [123.0]
        finally:
            await reopened.close()

    async def test_the_journal_beside_it_keeps_working(self, journal_url):
        store = open_token_store(journal_url)
        journal = open_journal(journal_url)
        try:
            await store.create(record()[1])
            await journal.add("copy", "v1/x", src="ca", dst="jp")
            assert (await journal.backlog()).pending == 1
        finally:
            await journal.close()
            await store.close()

    async def test_an_index_sees_another_handles_revocation_within_its_poll(self, journal_url):
        served, command = open_token_store(journal_url), open_token_store(journal_url)  # a node, `replicator tokens`
        token, r = record()
        index = TokenIndex(served, poll=0.05)
        polling = asyncio.ensure_future(index.run())
        try:
            await command.create(r)
            await _until(lambda: index.lookup(token) is not None and not isinstance(index.lookup(token), Refused))
            await command.revoke(r.token_id, time.time())
            await _until(lambda: isinstance(index.lookup(token), Refused))
        finally:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            await served.close()
            await command.close()


async def _until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not seen within the poll"
        await asyncio.sleep(0.02)
