"""What only the PostgreSQL journal has to show: concurrent claimers, server-clock leases, migrations,
and clear errors (never a password) when the database is away."""

import asyncio
import os
import socket
import time

import pytest

from replicator.config import ConfigError, load_config
from replicator.embedded import ensure
from replicator.journal import JournalError, JournalUnavailable, check_journal_url, open_journal
from replicator.journal.postgres import LATEST, PgJournal, parse_url
from tests.support.pg import connect, drop_schema, fresh_url
from tests.support.stack import server_paused, stack_fixture


@stack_fixture
async def url():
    url = fresh_url()
    yield url
    await drop_schema(url)


async def test_concurrent_claimers_never_get_the_same_row(url):
    """Eight claimers on four pools (separate connections) race over 600 rows until none is left."""
    seed = PgJournal(url)
    await asyncio.gather(*(seed.add("copy", f"v1/{i:04d}", src="ca", dst="jp") for i in range(600)))
    pools = [PgJournal(url) for _ in range(4)]
    claimed: dict[str, list[int]] = {}

    async def claimer(j: PgJournal, owner: str):
        got = claimed.setdefault(owner, [])
        while batch := await j.claim(owner, limit=7, lease=60):
            assert all(t.owner == owner for t in batch)
            got += [t.id for t in batch]

    try:
        await asyncio.gather(*(claimer(pools[i % 4], f"w{i}") for i in range(8)))
        ids = [i for got in claimed.values() for i in got]
        assert len(ids) == len(set(ids)) == 600
        assert sum(1 for got in claimed.values() if got) > 1  # they really did share the work
        total, _ = await seed.pending()
        assert total == 600 and await seed.claim("late") == []  # all leased, none free
    finally:
        for j in (seed, *pools):
            await j.close()


async def test_a_lapsed_lease_is_re_claimed_on_the_server_clock(url):
    a, b = PgJournal(url), PgJournal(url)
    try:
        await a.add("copy", "v1/x", src="ca", dst="jp", version="v1")
        [mine] = await a.claim("dies", lease=1)
        assert await b.claim("other", lease=30) == []
        await asyncio.sleep(1.2)  # "dies" never completes: its lease lapses
        [theirs] = await b.claim("other", lease=30)
        assert theirs.id == mine.id and theirs.owner == "other"
        assert await b.complete(theirs)
        conn = await connect(url)
        try:
            done = await conn.fetch("SELECT task_id, owner, lease_owner FROM completions")
        finally:
            await conn.close()
        assert [tuple(r) for r in done] == [(mine.id, "other", "other")]
    finally:
        await a.close()
        await b.close()


async def test_migrations_run_once_when_many_processes_start_together(url):
    journals = [PgJournal(url) for _ in range(6)]
    try:
        await asyncio.gather(*(j.open() for j in journals))
        await journals[0].add("copy", "v1/kept", src="ca", dst="jp")
        again = PgJournal(url)
        await again.open()  # a restart: nothing to apply, nothing lost
        assert (await again.backlog()).pending == 1
        await again.close()
        conn = await connect(url)
        try:
            versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
            assert versions == list(range(1, LATEST + 1))
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", LATEST + 1)
        finally:
            await conn.close()
        newer = PgJournal(url)
        with pytest.raises(JournalError, match=f"version {LATEST + 1}, newer than this replicator"):
            await newer.backlog()
        await newer.close()
    finally:
        for j in journals:
            await j.close()


async def test_an_unreachable_database_is_a_clear_error_without_the_password(url):
    dsn = url
    password = parse_url(dsn).password.get_secret_value()
    refused = open_journal(dsn.replace(dsn.split("@")[1].split("/")[0], "127.0.0.1:1") + "&connect_timeout=2")
    with pytest.raises(JournalUnavailable) as e:
        await refused.backlog()
    assert "127.0.0.1:1" in str(e.value) and "unavailable (connect)" in str(e.value)
    assert password not in str(e.value) and password not in repr(refused)
    wrong = open_journal(dsn.replace(f":{password}@", ":not-the-password@"))
    with pytest.raises(JournalError, match="authentication failed") as e:
        await wrong.backlog()
    assert "not-the-password" not in str(e.value)


async def test_a_hung_database_is_an_error_within_the_timeouts(url):
    j = PgJournal(url + "&connect_timeout=1&command_timeout=1")
    await j.add("copy", "v1/x", src="ca", dst="jp")
    try:
        with server_paused("postgres"):
            started = asyncio.get_running_loop().time()
            with pytest.raises(JournalUnavailable, match="unavailable"):
                await j.backlog()
            assert asyncio.get_running_loop().time() - started < 5
            await j.close()  # and closing does not hang either
        j = PgJournal(url)
        assert (await j.backlog()).pending == 1  # resumed: the row is still there
    finally:
        await j.close()


def test_the_config_takes_the_password_only_by_reference(tmp_path, monkeypatch):
    config, _ = ensure(tmp_path / "var")
    text = config.read_text()

    def load(journal: str):
        config.write_text(text.replace('journal = "sqlite:///journal.sqlite3"', f'journal = "{journal}"'))
        return load_config(config)

    with pytest.raises(
        ConfigError, match=r"replicator.toml:\d+: journal postgresql://u@db/j: the URL holds a password"
    ) as e:
        load("postgresql://u:hunter2@db/j")
    assert "hunter2" not in str(e.value)
    with pytest.raises(ConfigError, match="REPLICATOR_TEST_NOPE .the journal password. is not set"):
        load("postgresql://u@db/j?password_env=REPLICATOR_TEST_NOPE")
    monkeypatch.setenv("REPLICATOR_TEST_PW", "hunter2")
    loaded = load("postgresql://u@db/j?password_env=REPLICATOR_TEST_PW&schema=ops")
    assert "hunter2" not in repr(loaded) and "hunter2" not in repr(open_journal(loaded.journal))
    with pytest.raises(ConfigError, match="schema 'Bad-Name' must match"):
        load("postgresql://u@db/j?schema=Bad-Name")
    check_journal_url("sqlite:///x")
    with pytest.raises(ValueError, match="unsupported journal URL scheme"):
        check_journal_url("mysql://x")
    assert os.environ.get("REPLICATOR_TEST_NOPE") is None


async def test_a_hung_first_host_does_not_hide_the_next_one(url):
    """A multi-host URL whose first host accepts TCP and never answers (a crashed machine, a
    partition): each host has its own connect timeout, and once the second has taken the session
    new connections go to it first."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    hosts = url.split("@", 1)[1].split("/", 1)[0]
    j = PgJournal(url.replace(f"@{hosts}/", f"@127.0.0.1:{hung.getsockname()[1]},{hosts}/") + "&connect_timeout=1")
    try:
        started = time.monotonic()
        await j.add("copy", "v1/x", src="ca", dst="jp")
        assert time.monotonic() - started < 5 and j.host == hosts
        await j._db.pool.expire_connections()  # every call from now on makes a new connection
        started = time.monotonic()
        assert (await j.backlog()).pending == 1
        assert time.monotonic() - started < 0.5  # the hung host was not tried first again
    finally:
        hung.close()
        await j.close()


async def test_a_pooled_call_is_one_round_trip_and_a_transaction_left_open_is_still_undone(url):
    """No reset query after each call (the pool keeps no session state), but asyncpg still rolls
    back a transaction a call left open before the connection serves the next one."""
    journal = PgJournal(url)
    try:
        await journal.behind("v1/x")  # the pool, made and migrated: one connection
        pool = journal._db.pool
        sent: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda q: sent.append(q.query))
        sent.clear()
        await journal.behind("v1/x")
        assert len(sent) == 1 and "FROM tasks" in sent[0], sent
        await journal._db.run(
            "leave a transaction open",
            lambda c: c.execute(
                "BEGIN; INSERT INTO tasks (kind, name, src, dst, version, created, next_try) "
                "VALUES ('copy', 'v1/open', 'ca', 'jp', '', 0, 0)"
            ),
        )
        assert await journal.behind("v1/open") == set()  # never committed
        assert any(q.strip().upper() == "ROLLBACK" for q in sent), sent
    finally:
        await journal.close()
