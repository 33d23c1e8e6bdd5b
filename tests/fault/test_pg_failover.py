"""PostgreSQL failover under load: the primary crashes, the standby is promoted, nothing acknowledged is lost.

The journal runs on a pair of its own (``deploy/dev/stack pg-pair``): a primary whose commits wait for
a synchronous streaming standby (``synchronous_commit = on``, ``synchronous_standby_names``), both
named in one URL with ``target_session_attrs=read-write``, the service's key records (``[keys]
store``) and its cluster session included. The shared dev-stack PostgreSQL is not touched. Two loads run on the pair at once:

* an asyncio workload on one ``PgJournal`` (``tests/support/journal_load.py``): rows added, claimed,
  completed and put back; erasure receipts created, updated, finished; leases taken; checkpoints
  saved; a ledger of every call the journal answered;
* a real ``replicator serve`` process on the same pair, its region ``ca`` local and ``jp`` an Azure
  endpoint that refuses every connection, so each PUT and DELETE it acknowledges is ``degraded``:
  answered only once its journal row (a copy to ``jp`` at the answered version) is durable. HTTP
  clients (``tests/support/http_load.py``) PUT new names and DELETE some, sending again after a 503.

After both have run a while, the primary is SIGKILLed with all its backends (its machine dies),
nothing takes writes for ``NO_PRIMARY`` seconds, then the standby is promoted (``pg_ctl promote``).
Both loads go on, neither process restarted, until every kind of call has been answered again; a
customer erased before the crash and one erased after the promotion are still erased (writes 410);
then the promoted standby is read directly, key records included. Every acknowledged call must be there (lost = 0); the journal
may have raised nothing but ``JournalUnavailable``, the service answered nothing but success and 503.

Figures: one summary line on stdout (``pytest -s``) and, when ``REPLICATOR_RELIABILITY_OUT`` names a
file, a ``pg_failover`` entry in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest

from keys import KeyFile, generate_token
from replicator.embedded import all_scopes, config_text
from replicator.journal.postgres import PgJournal, parse_url
from tests.support.http_load import HttpLoad
from tests.support.journal_load import JournalLoad, lost
from tests.support.pgpair import PgPair
from tests.support.served import Served, free_port
from tests.support.stack import stack_command, stack_env, stack_fixture

PASSWORD_ENV = "REPLICATOR_TEST_JOURNAL_PASSWORD"
DEAD_AZURE_ENV = "REPLICATOR_TEST_DEAD_AZURE"
# The well-known Azurite development account, at a port nothing listens on.
DEAD_AZURE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50"
    "uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)
BEFORE = 2.0  # seconds of load before the crash
NO_PRIMARY = 0.5  # seconds between the crash and the promotion: nothing takes writes
AFTER = 1.0  # seconds of load once every kind of call was answered again
RECOVERY_DEADLINE = 30.0
OPTIONS = {"connect_timeout": "2", "command_timeout": "5"}
JOURNAL_OPS = {
    "add",
    "claim",
    "complete",
    "retry_later",
    "create_erasure",
    "update_erasure",
    "finish_erasure",
    "save_checkpoint",
    "acquire_lease",
}


@stack_fixture
def pg_pair():
    """A fresh primary + synchronous standby for this test; removed afterwards, whatever it did to them."""
    dsn = stack_env("REPLICATOR_TEST_PG_PAIR_DSN")
    stack_command("pg-pair", "up")
    try:
        yield PgPair(dsn)
    finally:
        stack_command("pg-pair", "down")


def serve_config(directory: Path, url: str) -> tuple[Path, str]:
    """``ca`` local, ``jp`` refusing; the journal and the key store on the pair, the password by reference."""
    KeyFile.generate(directory / "kek.key")
    token, token_hash = generate_token()
    target = parse_url(url)
    query = "&".join(f"{k}={v}" for k, v in {"schema": target.schema, "password_env": PASSWORD_ENV, **OPTIONS}.items())
    regions = f"""[regions.ca]
kind = "local"
country = "CA"
path = "regions/ca"

[regions.jp]
kind = "azure"
location = "japaneast"
country = "JP"
container = "failover"
connection_string_env = "{DEAD_AZURE_ENV}"
"""
    text = config_text(
        "pgfo",
        regions,
        {"fo": (token_hash, all_scopes())},
        sections="[limits]\nrequest_timeout = 2.0\nretry_attempts = 1\njournal_lease = 5\n\n",
    )
    journal = f"{target.shown}?target_session_attrs=read-write&{query}"
    store = journal.replace(f"schema={target.schema}", f"schema={target.schema}_keys")  # the key records too
    path = directory / "replicator.toml"
    text = text.replace('journal = "sqlite:///journal.sqlite3"', f'journal = "{journal}"')
    path.write_text(text.replace('keyring = "keyring.json"', f'store = "{store}"'))
    return path, token


async def check_the_check(ledger, pair: PgPair, schema: str) -> None:
    """The ledger check is not vacuous: an acknowledged row taken away behind its back is reported."""
    conn = await pair.connect(pair.standby, schema)
    try:
        name = await conn.fetchval("SELECT name FROM tasks WHERE name = any($1::text[]) LIMIT 1", sorted(ledger.added))
        assert name is not None
        await conn.execute("DELETE FROM tasks WHERE name = $1", name)
        assert (await lost(ledger, conn))["add"] == [name]
    finally:
        await conn.close()


async def erase(url: str, token: str, customer: str) -> None:
    """A customer with an object, erased (retried while the database is away); acknowledged when this returns."""
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for method, path, ok in (
            ("PUT", f"objects/{customer}/account/doc", 201),
            ("DELETE", f"customers/{customer}", 202),
        ):
            deadline = time.monotonic() + RECOVERY_DEADLINE
            while True:
                async with http.request(method, f"{url}/v1/{path}", data=b"private", headers=auth) as r:
                    if r.status == ok:
                        break
                    assert r.status == 503 and time.monotonic() < deadline, (method, path, r.status, await r.text())
                await asyncio.sleep(0.1)


async def still_erased(url: str, token: str, customer: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.put(f"{url}/v1/objects/{customer}/account/doc", data=b"again", headers=auth) as r:
            assert r.status == 410, (customer, r.status, await r.text())


async def until(condition, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_primary_dies_under_load_and_nothing_acknowledged_is_lost(pg_pair: PgPair, tmp_path):
    journal_url = pg_pair.url("fo", **OPTIONS)
    serve_url = pg_pair.url("fosvc")
    config, token = serve_config(tmp_path, serve_url)
    env = {PASSWORD_ENV: pg_pair.password, DEAD_AZURE_ENV: DEAD_AZURE.format(port=free_port())}
    service = Served(tmp_path, ["serve", "--config", str(config)], env).start()
    journal = PgJournal(journal_url)
    jload = JournalLoad(journal, workers=2)
    hload = HttpLoad(service.url, token, "failover", clients=4)
    try:
        await journal.open()
        assert journal.host == pg_pair.primary
        pid = service.process.pid
        jload.start()
        await hload.start()
        await asyncio.sleep(BEFORE)
        await until(
            lambda: JOURNAL_OPS <= set(jload.ledger.acked) and {"PUT", "DELETE"} <= hload.ledger.acked_after(0).keys(),
            time.monotonic() + RECOVERY_DEADLINE,
            "every kind of call answered before the crash",
        )
        acked_before = sum(jload.ledger.acked.values()) + len(hload.ledger.answered)
        await erase(service.url, token, "erased-before-the-crash")

        await pg_pair.kill_primary()
        killed_at = time.monotonic()  # every process of the primary is gone by now
        await asyncio.sleep(NO_PRIMARY)
        promote_started = time.monotonic()
        await pg_pair.promote()
        promoted_at = time.monotonic()

        def recovered() -> bool:
            return JOURNAL_OPS <= set(jload.ledger.acked_after(promoted_at)) and {"PUT", "DELETE"} <= set(
                hload.ledger.acked_after(promoted_at)
            )

        await until(recovered, promoted_at + RECOVERY_DEADLINE, "every kind of call answered after the promotion")
        recovered_at = time.monotonic()
        await erase(service.url, token, "erased-after-the-promotion")
        await asyncio.sleep(AFTER)
        for customer in ("erased-before-the-crash", "erased-after-the-promotion"):
            await still_erased(service.url, token, customer)
    finally:
        await jload.stop()
        await hload.stop()
        service.stop()
        await journal.close()

    # The same process served throughout: it recovered by itself.
    assert service.process.pid == pid and service.process.returncode in (0, -15), service.process.returncode
    assert journal.host == pg_pair.standby
    assert jload.ledger.errors == [], "\n".join(jload.ledger.errors[:3])
    assert hload.ledger.unexpected == [], hload.ledger.unexpected[:5]

    conn = await pg_pair.connect(pg_pair.standby, parse_url(journal_url).schema)
    try:
        assert await conn.fetchval("SELECT NOT pg_is_in_recovery()")
        journal_lost = await lost(jload.ledger, conn)
        rows = await conn.fetch(
            f'SELECT version FROM "{parse_url(serve_url).schema}".tasks WHERE kind = $1 AND dst = $2', "copy", "jp"
        )
    finally:
        await conn.close()
    keys = await pg_pair.connect(pg_pair.standby, parse_url(serve_url).schema + "_keys")
    try:  # both acknowledged erasures are in the promoted standby's key records, their keys gone
        erased = await keys.fetch("SELECT dek_id FROM key_customers WHERE erased_at IS NOT NULL")
        live = await keys.fetchval("SELECT count(*) FROM key_deks WHERE destroyed_at IS NULL")
    finally:
        await keys.close()
    assert len(erased) == 2 and all(r["dek_id"] is None for r in erased), erased
    assert live >= 1  # the load's customer still has its key
    stored = {r["version"] for r in rows}
    http_lost = sorted(name for name, version in hload.ledger.versions.items() if version not in stored)
    assert all(not v for v in journal_lost.values()), {k: v[:5] for k, v in journal_lost.items() if v}
    assert http_lost == [], http_lost[:5]
    await check_the_check(jload.ledger, pg_pair, parse_url(journal_url).schema)

    first_journal = jload.ledger.first_ack_started_after(killed_at)
    first_http = hload.ledger.first_ack_started_after(killed_at)
    summary = {
        "journal_acked": sum(jload.ledger.acked.values()),
        "journal_acked_by_op": dict(sorted(jload.ledger.acked.items())),
        "journal_unavailable": sum(jload.ledger.unavailable.values()),
        "journal_lost": sum(len(v) for v in journal_lost.values()),
        "journal_rows_checked": {
            "added": len(jload.ledger.added),
            "completed": len(jload.ledger.completed),
            "put_back": len(jload.ledger.put_back),
            "erasures": len(jload.ledger.erasures),
            "checkpoints": len(jload.ledger.checkpoints),
            "leases": len(jload.ledger.leases),
        },
        "http_acked": len(hload.ledger.answered),
        "http_names_checked": len(hload.ledger.versions),
        "http_503": sum(n for (_, status), n in hload.ledger.statuses.items() if status == 503),
        "http_unresolved": len(hload.ledger.unresolved),
        "http_lost": len(http_lost),
        "acked_before_crash": acked_before,
        "no_primary_s": round(promote_started - killed_at, 2),
        "promote_s": round(promoted_at - promote_started, 2),
        "journal_writes_back_after_crash_s": round(first_journal - killed_at, 2) if first_journal else None,
        # pg_ctl promote -w returns a little after the standby takes writes: count from its start
        "journal_writes_back_after_promote_began_s": round(first_journal - promote_started, 2)
        if first_journal
        else None,
        "http_writes_back_after_crash_s": round(first_http - killed_at, 2) if first_http else None,
        "every_kind_back_after_promotion_s": round(recovered_at - promoted_at, 2),
    }
    print("\npg-failover: " + " ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict)))
    out = os.environ.get("REPLICATOR_RELIABILITY_OUT")
    if out:  # other fault tests may write their own entries to the same file
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
        data["pg_failover"] = summary
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
