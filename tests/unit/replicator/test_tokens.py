"""The token store on SQLite (its own tables and version table beside the journal's), the index a
node polls, its refusals and its expiry gauge, and the expiry parser of ``replicator tokens``."""

from __future__ import annotations

import sqlite3
import time

import click
import pytest
from prometheus_client import CollectorRegistry

from keys import generate_token, parse_policy
from keys.policy import PolicyError
from replicator.cli.tokens import parse_expiry
from replicator.journal.sqlite import SqliteJournal
from replicator.tokens import TokenRecord, TokenStoreError, new_token_id, open_token_store
from replicator.tokens.index import EXPIRES_GAUGE, Refused, TokenIndex


def record(principal="batch", *, expires_at=None, scopes=("write:account",), **kw) -> tuple[str, TokenRecord]:
    token, digest = generate_token()
    return token, TokenRecord(new_token_id(), principal, digest, scopes, time.time(), expires_at, **kw)


async def test_the_store_lives_beside_the_journal_with_its_own_tables_and_version(tmp_path):
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    store = open_token_store(f"sqlite:///{path}")
    try:
        assert await store.generation() == 0
        _, first = record()
        await store.create(first)
        assert await store.generation() == 1
        assert await store.records() == [first]
        with pytest.raises(TokenStoreError, match="exists"):
            await store.create(first)
        assert await store.generation() == 1  # the failed create changed nothing
        revoked = await store.revoke(first.token_id, 123.0)
        assert revoked is not None and revoked.revoked_at == 123.0
        assert await store.generation() == 2
        again = await store.revoke(first.token_id, 456.0)  # revoking twice keeps the first time
        assert again is not None and again.revoked_at == 123.0 and await store.generation() == 2
        assert await store.revoke("tok_missing", 1.0) is None
        await journal.add("copy", "v1/x", src="ca", dst="jp")  # the journal still works in the same file
        assert (await journal.backlog()).pending == 1
    finally:
        await store.close()
        await journal.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM tokens_version").fetchall() == [(1,)]
    # Opening again migrates nothing twice.
    store = open_token_store(f"sqlite:///{path}")
    assert len(await store.records()) == 1
    await store.close()


async def test_the_index_answers_live_revoked_expired_and_unknown_tokens(tmp_path):
    store = open_token_store(f"sqlite:///{tmp_path / 'j.sqlite3'}")
    now = time.time()
    live_token, live = record("batch", expires_at=now + 3600, client_san="DNS:batch.internal")
    old_token, old = record("batch", expires_at=now - 1)
    gone_token, gone = record("etl")
    for r in (live, old, gone):
        await store.create(r)
    await store.revoke(gone.token_id, now)
    registry = CollectorRegistry()
    index = TokenIndex(store, registry)
    await index.refresh()

    principal = index.lookup(live_token)
    assert not isinstance(principal, Refused) and principal is not None
    assert (principal.name, principal.scopes, principal.client_san) == (
        "batch",
        {"write:account"},
        "DNS:batch.internal",
    )
    assert principal.token_id == live.token_id

    expired = index.lookup(old_token)
    assert isinstance(expired, Refused) and expired.status == 401
    assert f"the token {old.token_id} (principal 'batch') expired at" in expired.message
    revoked = index.lookup(gone_token)
    assert isinstance(revoked, Refused) and revoked.status == 401
    assert f"{gone.token_id} (principal 'etl') was revoked at" in revoked.message
    assert gone_token not in revoked.message and gone.token_sha256 not in revoked.message
    assert index.lookup(generate_token()[0]) is None

    # The gauge: the last live expiry of each principal; etl has no live token, so no series.
    assert registry.get_sample_value(EXPIRES_GAUGE, {"principal": "batch"}) == pytest.approx(now + 3600)
    assert registry.get_sample_value(EXPIRES_GAUGE, {"principal": "etl"}) is None
    _, forever = record("batch")
    await store.create(forever)
    await index.refresh()  # a live token that never expires: batch does not lose access, no series
    assert registry.get_sample_value(EXPIRES_GAUGE, {"principal": "batch"}) is None
    await store.close()


async def test_a_store_not_read_lately_fails_closed_for_its_tokens(tmp_path):
    store = open_token_store(f"sqlite:///{tmp_path / 'j.sqlite3'}")
    token, r = record()
    await store.create(r)
    index = TokenIndex(store, stale_after=0.05)
    assert index.lookup(token) is None  # never read: the node knows no store token
    await index.refresh()
    assert not isinstance(index.lookup(token), Refused)
    time.sleep(0.1)
    stale = index.lookup(token)
    assert isinstance(stale, Refused) and stale.status == 503
    assert "cannot tell whether" in stale.message and r.token_id in stale.message
    await store.close()


async def test_the_index_picks_up_a_revocation_made_by_another_store_handle(tmp_path):
    url = f"sqlite:///{tmp_path / 'j.sqlite3'}"
    served, command = open_token_store(url), open_token_store(url)  # the server and `replicator tokens`
    token, r = record()
    await command.create(r)
    index = TokenIndex(served, poll=0.02)
    import asyncio

    polling = asyncio.ensure_future(index.run())
    try:
        for _ in range(100):
            if index.lookup(token) is not None:
                break
            await asyncio.sleep(0.02)
        assert not isinstance(index.lookup(token), Refused | None)
        await command.revoke(r.token_id, time.time())
        for _ in range(100):
            if isinstance(index.lookup(token), Refused):
                break
            await asyncio.sleep(0.02)
        assert isinstance(index.lookup(token), Refused)
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
        await served.close()
        await command.close()


def test_expiry_is_a_duration_or_a_future_time():
    now = 1_000_000.0
    assert parse_expiry("90d", None, now) == now + 90 * 86_400
    assert parse_expiry("30m", None, now) == now + 1_800
    assert parse_expiry(None, "2027-01-31T00:00:00Z", now) == 1_801_353_600.0
    assert parse_expiry(None, None, now) is None
    for bad in ("0d", "10", "1y", "-1h"):
        with pytest.raises(click.BadParameter):
            parse_expiry(bad, None, now)
    with pytest.raises(click.BadParameter, match="not in the future"):
        parse_expiry(None, "1970-01-02T00:00:00", now)
    with pytest.raises(click.UsageError):
        parse_expiry("1d", "2027-01-31T00:00:00Z", now)


POLICY = """
[classes.account]
purposes = ["service"]
retention = "until erasure"

[[principals]]
name = "web"
token_sha256 = "{digest}"
scopes = ["write:account"]
{binding}
"""


def test_the_policy_binds_a_principal_to_a_client_certificate():
    digest = "a" * 64
    policy = parse_policy(
        POLICY.format(digest=digest, binding='client_subject = "CN=web,O=Example"\nclient_san = "DNS:web"')
    )
    (web,) = policy.principals
    assert (web.client_subject, web.client_san, web.bound) == ("CN=web,O=Example", "DNS:web", True)
    with pytest.raises(PolicyError, match=r"<policy>:10: principal 'web': client_san 'web' must be DNS:<value>"):
        parse_policy(POLICY.format(digest=digest, binding='client_san = "web"'))
    with pytest.raises(PolicyError, match="not an RFC 4514 name"):
        parse_policy(POLICY.format(digest=digest, binding='client_subject = "web"'))
