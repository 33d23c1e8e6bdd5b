"""The PostgreSQL journal's URL with several hosts (a primary and its standbys), and connecting through
such a URL when no host takes the session: no server needed."""

import asyncio
import socket
import time

import pytest

from replicator.journal import JournalUnavailable
from replicator.journal.pgconnect import Connector, NoHostAccepted
from replicator.journal.pgurl import check_url, parse_url
from replicator.journal.postgres import PgJournal


def test_a_multi_host_url_keeps_its_hosts_in_order_and_hides_the_password():
    t = parse_url(
        "postgresql://replicator:s3cret@10.0.0.1:5432,db2.internal:5433,[fd00::3]:6432,db4/replicator"
        "?target_session_attrs=read-write&schema=journal&connect_timeout=3"
    )
    assert t.hosts == (("10.0.0.1", 5432), ("db2.internal", 5433), ("fd00::3", 6432), ("db4", None))
    assert t.shown == "postgresql://replicator@10.0.0.1:5432,db2.internal:5433,[fd00::3]:6432,db4/replicator"
    assert "s3cret" not in t.dsn and "s3cret" not in t.shown and "s3cret" not in repr(t)
    assert t.password.get_secret_value() == "s3cret" and t.inline_password
    assert t.dsn == (
        "postgresql://replicator@10.0.0.1:5432,db2.internal:5433,[fd00::3]:6432,db4/replicator"
        "?target_session_attrs=read-write"
    )
    assert (t.schema, t.connect_timeout, t.target_session_attrs) == ("journal", 3.0, "read-write")


def test_the_journal_asks_for_a_writable_server_unless_told_primary_or_any():
    assert parse_url("postgresql://u@a,b/j").target_session_attrs == "read-write"
    assert parse_url("postgresql://u@a,b/j").dsn.endswith("?target_session_attrs=read-write")
    assert parse_url("postgresql://u@a/j?target_session_attrs=primary").target_session_attrs == "primary"
    assert parse_url("postgresql://u@a/j?target_session_attrs=any").target_session_attrs == "any"
    for reads_only in ("read-only", "standby", "prefer-standby", "nonsense"):
        with pytest.raises(ValueError, match="the journal writes") as e:
            parse_url(f"postgresql://u:pw1234@a,b/j?target_session_attrs={reads_only}")
        assert "pw1234" not in str(e.value)


def test_libpq_host_and_port_parameters_and_defaults():
    t = parse_url("postgresql:///j?host=a,b&port=5433,5434")
    assert t.hosts == (("a", 5433), ("b", 5434))
    assert parse_url("postgresql://u@a,b/j?port=6000").hosts == (("a", 6000), ("b", 6000))
    assert parse_url("postgresql://u@%2Fvar%2Frun%2Fpostgresql/j").hosts == (("/var/run/postgresql", None),)
    assert parse_url("postgresql:///j").hosts == ()  # asyncpg's own defaults (PGHOST, the socket)
    for bad in ("postgresql://u:pw1234@a:x,b/j", "postgresql://u:pw1234@a:70000/j"):
        with pytest.raises(ValueError, match="port") as e:
            parse_url(bad)
        assert "pw1234" not in str(e.value)


def test_the_config_rule_holds_for_multi_host_urls(monkeypatch):
    with pytest.raises(ValueError, match="the URL holds a password") as e:
        check_url("postgresql://u:hunter2@a:1,b:2/j")
    assert "hunter2" not in str(e.value) and "postgresql://u@a:1,b:2/j" in str(e.value)
    monkeypatch.setenv("REPLICATOR_TEST_PW", "hunter2")
    check_url("postgresql://u@a:1,b:2/j?password_env=REPLICATOR_TEST_PW&target_session_attrs=read-write")


def _silent_listener() -> socket.socket:
    """A host that accepts TCP connections and never answers: a hung server, or a partition."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def _refusing_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_each_host_gets_its_own_timeout_and_every_reason_is_reported():
    hung = [_silent_listener() for _ in range(2)]
    hosts = (("127.0.0.1", _refusing_port()), *(("127.0.0.1", s.getsockname()[1]) for s in hung))
    try:
        started = time.monotonic()
        with pytest.raises(NoHostAccepted) as e:
            await Connector(hosts)("postgresql://u@x/j", password="pw1234", timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        for s in hung:
            s.close()
    # Both hung hosts were tried, each for its own half second (not one timeout for all).
    assert 0.9 < elapsed < 5, elapsed
    assert str(e.value).count("127.0.0.1:") == 3 and "ConnectionRefusedError" in str(e.value)
    assert "pw1234" not in str(e.value)


async def test_a_journal_whose_hosts_all_fail_is_unavailable_and_names_them():
    hung = _silent_listener()
    port = hung.getsockname()[1]
    refused = _refusing_port()
    j = PgJournal(f"postgresql://u:pw1234@127.0.0.1:{refused},127.0.0.1:{port}/j?connect_timeout=0.5")
    try:
        with pytest.raises(JournalUnavailable, match="unavailable \\(connect\\): NoHostAccepted") as e:
            await asyncio.wait_for(j.backlog(), 10)
        assert f"127.0.0.1:{refused}" in str(e.value) and f"127.0.0.1:{port}" in str(e.value)
        assert "pw1234" not in str(e.value)
    finally:
        hung.close()
        await j.close()
