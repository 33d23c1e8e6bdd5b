"""The index a node polls (its refusals, its expiry gauge, failing closed), the expiry parser of
``replicator tokens``, and principals bound to a client certificate in the policy. The stores
themselves: ``tests/conformance/tokens_suite.py``."""

from __future__ import annotations

import time

import click
import pytest
from prometheus_client import CollectorRegistry

from keys import generate_token, parse_policy
from keys.policy import PolicyError
from replicator.cli.tokens import parse_expiry
from replicator.tokens import TokenRecord, new_token_id, open_token_store
from replicator.tokens.index import EXPIRES_GAUGE, Refused, TokenIndex


def record(principal="batch", *, expires_at=None, scopes=("write:account",), **kw) -> tuple[str, TokenRecord]:
    token, digest = generate_token()
    return token, TokenRecord(new_token_id(), principal, digest, scopes, time.time(), expires_at, **kw)


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
    never = index.lookup(token)  # never read: the node cannot check any token but the policy file's
    assert isinstance(never, Refused) and never.status == 503 and "cannot check this token" in never.message
    await index.refresh()
    assert not isinstance(index.lookup(token), Refused)
    assert index.lookup(generate_token()[0]) is None
    time.sleep(0.1)
    stale = index.lookup(token)
    assert isinstance(stale, Refused) and stale.status == 503
    assert f"cannot check token {r.token_id}" in stale.message
    assert isinstance(index.lookup(generate_token()[0]), Refused)
    await store.close()


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
