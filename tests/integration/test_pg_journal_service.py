"""The service on a PostgreSQL journal: degraded writes are journaled there and replicated; while the
database is away a write that needs the journal is refused (503), never acknowledged, and the workers
carry on once it is back."""

from replicator.embedded import ensure
from replicator.journal.postgres import PgJournal, parse_url
from tests.support.eventually import eventually
from tests.support.faulty import faulty_service
from tests.support.pg import drop_schema, fresh_url
from tests.support.stack import server_paused, stack_fixture

PASSWORD_ENV = "REPLICATOR_TEST_JOURNAL_PASSWORD"


@stack_fixture
async def service(tmp_path, monkeypatch):
    url = fresh_url("svc", connect_timeout="2", command_timeout="2")
    target = parse_url(url)
    monkeypatch.setenv(PASSWORD_ENV, target.password.get_secret_value())
    config_path, token = ensure(tmp_path / "var")
    config_path.write_text(
        config_path.read_text().replace(
            'journal = "sqlite:///journal.sqlite3"',
            f'journal = "{target.shown}?schema={target.schema}&connect_timeout=2&command_timeout=2'
            f'&password_env={PASSWORD_ENV}"',
        )
    )
    async with faulty_service(config_path) as (client, _, faulty):
        client.auth = {"Authorization": f"Bearer {token}"}
        yield client, faulty, PgJournal(url)
    await drop_schema(url)


async def replicated(client, names, timeout=20.0) -> bool:
    async def complete():
        heads = [await client.head(f"/v1/objects/c/account/{n}", headers=client.auth) for n in names]
        return all(h.headers["X-Replication"] == "complete" for h in heads)

    return await eventually(complete, timeout=timeout, what=f"{names} replicated")


async def test_degraded_writes_go_through_the_shared_journal(service):
    client, faulty, journal = service
    try:
        faulty["jp"].down = True
        for i in range(5):
            resp = await client.put(f"/v1/objects/c/account/k{i}", data=b"v%d" % i, headers=client.auth)
            assert resp.status == 201 and (await resp.json())["replication"] == "degraded"
        total, rows = await journal.pending()
        assert total == 5 and {(r.kind, r.src, r.dst) for r in rows} == {("copy", "ca", "jp")}
        faulty["jp"].down = False
        assert await replicated(client, [f"k{i}" for i in range(5)])
        assert (await journal.backlog()).pending == 0

        faulty["jp"].down = True
        with server_paused("postgres"):
            resp = await client.put("/v1/objects/c/account/during", data=b"x", headers=client.auth)
            assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
            ready = await (await client.get("/readyz")).json()
            assert ready["checks"]["journal"].startswith("unavailable"), ready
        resp = await client.put("/v1/objects/c/account/after", data=b"y", headers=client.auth)
        assert resp.status == 201 and (await resp.json())["replication"] == "degraded"
        faulty["jp"].down = False
        assert await replicated(client, ["after"]), "the workers did not survive the journal's outage"
    finally:
        await journal.close()


async def test_a_read_goes_on_while_the_journal_cannot_take_its_repair(service):
    client, faulty, journal = service
    try:
        faulty["jp"].down = True
        resp = await client.put("/v1/objects/c/account/lonely", data=b"only in ca", headers=client.auth)
        assert (await resp.json())["replication"] == "degraded"
        assert await journal.drop() == 1  # jp stays without it: the next read finds it missing
        faulty["jp"].down = False
        with server_paused("postgres"):
            resp = await client.get("/v1/objects/c/account/lonely", headers={**client.auth, "X-Purpose": "service"})
            assert resp.status == 200 and await resp.read() == b"only in ca"
        # With the journal back and owing ca nothing, a read is served by ca alone (the far region is not
        # asked, so it does not repair jp): a loss the journal does not know of is the reconciler's to find.
        resp = await client.get("/v1/objects/c/account/lonely", headers={**client.auth, "X-Purpose": "service"})
        assert resp.status == 200 and await resp.read() == b"only in ca"
        resp = await client.head("/v1/objects/c/account/lonely", headers=client.auth)
        assert resp.headers["X-Replication-Regions"] == "ca=current, jp=missing"
    finally:
        await journal.close()
