"""replicator.journal.together: concurrent calls of one kind go out as one."""

import asyncio

import pytest

from replicator.journal.together import Together


class _Wire:
    """Answers each item with itself doubled, after a pause; records every send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[int]]] = []
        self.fail_next: Exception | None = None

    async def send(self, kind: str, items: list[int]) -> list[int]:
        self.sent.append((kind, list(items)))
        await asyncio.sleep(0.01)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return [2 * i for i in items]

    def together(self) -> Together[int, int]:
        return Together(("a", "b"), self.send)


async def test_calls_made_while_one_is_in_flight_go_out_together_each_with_its_own_answer():
    wire = _Wire()
    together = wire.together()
    first = asyncio.ensure_future(together("a", 0))
    await asyncio.sleep(0.001)  # in flight
    answers = await asyncio.gather(first, *(together("a", i) for i in range(1, 10)), together("b", 100))
    assert answers == [2 * i for i in range(10)] + [200]
    # The first went alone; the rest queued behind it and went in one send per kind (kinds in turn).
    assert wire.sent == [("a", [0]), ("b", [100]), ("a", list(range(1, 10)))]


async def test_a_failed_send_fails_its_batch_only():
    wire = _Wire()
    together = wire.together()
    wire.fail_next = ConnectionResetError("gone")
    first = asyncio.gather(*(together("a", i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in await first)
    assert await together("a", 5) == 10


async def test_a_submitted_call_is_sent_and_answered_though_its_caller_left():
    wire = _Wire()
    together = wire.together()
    step = together.submit("a", 7)
    call = asyncio.ensure_future(asyncio.shield(step))
    await asyncio.sleep(0)
    call.cancel()
    assert await step == 14 and wire.sent == [("a", [7])]  # the caller may still take the answer


async def test_a_failure_nobody_awaits_is_dropped():
    wire = _Wire()
    together = wire.together()
    wire.fail_next = ConnectionResetError("gone")
    together.submit("b", 1)
    await asyncio.sleep(0.05)
    assert wire.sent == [("b", [1])]  # and no "exception never retrieved" when it is collected


async def test_fail_stops_every_call_queued_or_in_flight():
    wire = _Wire()
    together = wire.together()
    calls = [asyncio.ensure_future(together("a", i)) for i in range(3)]
    await asyncio.sleep(0)  # the first is in flight, the others queued
    together.fail(RuntimeError("closed"))
    for call in calls:
        with pytest.raises(RuntimeError, match="closed"):
            await call
