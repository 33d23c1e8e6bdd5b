"""replicator.replication.cluster on the dev stack's PostgreSQL: node ids, and name locks across nodes."""

from __future__ import annotations

import asyncio

import pytest

from replicator.replication.cluster import ClusterSession, LockBusy, LockLost, NodeIdTaken
from tests.support.calls import Calls
from tests.support.pg import connect, drop_schema, fresh_url
from tests.support.stack import stack_fixture


@stack_fixture
async def url():
    url = fresh_url("cluster")
    yield url
    await drop_schema(url)


@pytest.fixture
async def sessions(url):
    opened: list[ClusterSession] = []

    async def open_session(node: str, **options) -> ClusterSession:
        session = await ClusterSession(url, node, **options).open()
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        await session.close()


async def _kill_backend(url: str, node: str) -> None:
    """What a SIGKILLed node looks like to the database: its session's connection ends."""
    conn = await connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"replicator-node-{node}",
        )
        assert killed == 1
    finally:
        await conn.close()


async def test_a_node_id_is_held_by_one_running_node(url, sessions):
    await sessions("ca-1")
    with pytest.raises(NodeIdTaken, match=r"node id 'ca-1' is taken by a running node \(host .*, pid \d+"):
        await sessions("ca-1")
    await sessions("ca-2")  # another id is free
    await sessions("ca-1", claim=False)  # a command beside the node shares its locks, not its id


async def test_a_dead_nodes_id_is_free_at_once(url, sessions):
    await sessions("ca-1")
    await _kill_backend(url, "ca-1")
    await asyncio.wait_for(sessions("ca-1"), 5)


async def test_one_holder_of_a_name_in_the_cluster(sessions):
    a, b = await sessions("a"), await sessions("b")
    events: list[str] = []

    async def write(session: ClusterSession, who: str) -> None:
        async with session.hold("v1/x/account/n"):
            events.append(f"{who} in")
            await asyncio.sleep(0.05)
            events.append(f"{who} out")

    await asyncio.gather(write(a, "a"), write(b, "b"), write(a, "a2"), write(b, "b2"))
    assert len(events) == 8
    for i in range(0, 8, 2):  # never two inside at once
        assert events[i].endswith(" in") and events[i + 1] == events[i].replace(" in", " out")


async def test_the_next_holder_gets_the_newest_version_as_its_floor(sessions):
    a, b = await sessions("a"), await sessions("b")
    async with a.hold("v1/x/account/n") as held:
        assert held.floor is None
        held.wrote("0000001700000000000.00000.a")
    async with b.hold("v1/x/account/n") as held:
        assert held.floor == "0000001700000000000.00000.a"
        held.wrote("0000001600000000000.00000.b")  # an older clock never lowers the floor
    async with a.hold("v1/x/account/n") as held:
        assert held.floor == "0000001700000000000.00000.a"
    async with a.hold("v1/x/account/other") as held:
        assert held.floor is None


async def test_a_holder_waiting_for_the_name_gets_the_version_written_before_it_was_freed(url, sessions):
    # The floor is kept, then the name freed: a node polling for the name must not get it while
    # the version is still uncommitted. A trigger stretches that commit to 0.3 s, as a slow disk would.
    a, b = await sessions("a"), await sessions("b")
    conn = await connect(url)
    try:
        await conn.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$; "
            "CREATE TRIGGER slow_commit AFTER INSERT OR UPDATE ON name_versions "
            "FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    finally:
        await conn.close()
    holding = asyncio.Event()

    async def first() -> None:
        async with a.hold("v1/x/account/n") as held:
            held.wrote("0000001700000000000.00000.a")
            holding.set()
            await asyncio.sleep(0.05)  # b starts polling for the name meanwhile

    writer = asyncio.create_task(first())
    await holding.wait()
    async with b.hold("v1/x/account/n") as held:
        assert held.floor == "0000001700000000000.00000.a"
    await writer


async def test_concurrent_holds_share_their_statements(sessions):
    a = await sessions("a")
    statements = Calls(a, "_say")

    async def write(i: int) -> str | None:
        async with a.hold(f"v1/x/account/n{i}") as held:
            held.wrote(f"00000017000000000{i:02d}.00000.a")
            return held.floor

    assert await asyncio.gather(*(write(i) for i in range(32))) == [None] * 32
    assert statements.count <= 12  # four steps a hold; alone, 32 holds would send 128
    async with a.hold("v1/x/account/n7") as held:
        assert held.floor == "0000001700000000007.00000.a"  # each kept its own version


@pytest.mark.parametrize("step", ["lock", "floor", "keep", "unlock"])
async def test_a_hold_cancelled_at_any_step_leaves_the_name_free(sessions, step):
    # The cancel lands as the step's statement is queued: it still goes out, and what it took is
    # freed before the hold lets go of the name.
    a, b = await sessions("a"), await sessions("b", wait=2)
    task: asyncio.Future[None] | None = None
    submit = a._together.submit

    def submitting(kind, item):
        future = submit(kind, item)
        if kind == step and task is not None:
            task.cancel()
        return future

    a._together.submit = submitting

    async def write() -> None:
        async with a.hold("v1/x/account/c") as held:
            held.wrote("0000001700000000000.00000.a")

    task = asyncio.ensure_future(write())
    with pytest.raises(asyncio.CancelledError):
        await task
    async with b.hold("v1/x/account/c"):  # not LockBusy: nothing was left taken
        pass


async def test_a_name_held_too_long_elsewhere_is_busy_not_a_hang(sessions):
    a, b = await sessions("a"), await sessions("b", wait=0.2)
    async with a.hold("v1/x/account/n"):
        with pytest.raises(LockBusy):
            async with b.hold("v1/x/account/n"):
                pass


async def test_a_write_under_a_lost_session_is_not_acknowledged(url, sessions):
    a, b = await sessions("a"), await sessions("b")
    with pytest.raises(LockLost, match="not acknowledged"):
        async with a.hold("v1/x/account/n") as held:
            held.wrote("0000001700000000000.00000.a")
            await _kill_backend(url, "a")
            async with b.hold("v1/x/account/n"):  # the database freed the name with the session
                pass
    async with a.hold("v1/x/account/n") as held:  # the next call makes a new session (and claims the id)
        # The unacknowledged write may still have reached a region: the next one goes above it.
        assert held.floor == "0000001700000000000.00000.a"


@pytest.mark.parametrize("notice", [False, True], ids=["released-on-the-dead-connection", "noticed-first"])
async def test_a_version_written_under_a_lost_session_is_still_the_next_floor(url, sessions, notice):
    # Unnoticed, the unlock goes out on a connection the client has not yet seen die, and fails
    # there; noticed, it goes out on a new one. Either way the version is kept as the next floor.
    a = await sessions("a")
    with pytest.raises(LockLost):
        async with a.hold("v1/x/account/m") as held:
            held.wrote("0000001700000000000.00000.a")
            transport = a._conn._transport  # the only way to hold back the news of its end
            if not notice:
                transport.pause_reading()
            await _kill_backend(url, "a")
            await asyncio.sleep(0.1)
            assert a._conn.is_closed() == notice
            transport.resume_reading()
    async with a.hold("v1/x/account/m") as held:
        assert held.floor == "0000001700000000000.00000.a"
