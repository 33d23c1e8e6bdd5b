import asyncio
import gc

import pytest

from replicator.paths.fanout import FanOut


async def source(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise ConnectionResetError("client went away")
        yield bytes([i])
        await asyncio.sleep(0)


async def collect(it):
    return b"".join([c async for c in it])


async def test_every_consumer_sees_every_chunk():
    fan = FanOut(source(50), 2)
    fan.start()
    a, b = await asyncio.gather(collect(fan.consumer(0)), collect(fan.consumer(1)))
    await fan.wait()
    assert a == b == bytes(range(50))


async def test_a_released_consumer_does_not_block_the_other():
    fan = FanOut(source(200), 2, depth=2)
    fan.start()
    fan.release(1)  # its put failed before reading anything
    assert await collect(fan.consumer(0)) == bytes(range(200))
    await asyncio.wait_for(fan.wait(), 5)


async def test_a_source_error_reaches_every_consumer():
    fan = FanOut(source(100, fail_at=60), 2, depth=2)
    fan.start()
    results = await asyncio.gather(collect(fan.consumer(0)), collect(fan.consumer(1)), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    with pytest.raises(ConnectionResetError):
        await fan.wait()


async def test_a_source_error_nobody_waits_for_is_not_logged_as_never_retrieved():
    loop = asyncio.get_running_loop()
    unretrieved = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    fan = FanOut(source(5, fail_at=2), 1)
    fan.start()
    with pytest.raises(ConnectionResetError):
        await collect(fan.consumer(0))
    fan.release(0)
    await asyncio.sleep(0)  # the pump has failed; the put ends without wait() (cancelled)
    del fan
    gc.collect()
    await asyncio.sleep(0)
    assert unretrieved == []


async def paced(it, *, delay=0.0, stall_after=None, release=None):
    """A put that takes chunks every ``delay`` s; after ``stall_after`` chunks it stops moving."""
    got = []
    try:
        async for chunk in it:
            got.append(chunk)
            if stall_after is not None and len(got) == stall_after:
                await asyncio.sleep(3600)
            await asyncio.sleep(delay)
        return b"".join(got)
    finally:
        if release is not None:
            release()


async def test_a_consumer_that_stops_moving_is_unavailable_and_the_other_completes():
    from regions import Unavailable

    fan = FanOut(source(40), 2, depth=2)
    fan.start()
    puts = [
        paced(fan.consumer(0), release=lambda: fan.release(0)),
        paced(fan.consumer(1), stall_after=5, release=lambda: fan.release(1)),
    ]
    near, far = await asyncio.wait_for(fan.gather(["ca", "jp"], puts, no_progress=0.3), 5)
    await fan.wait()
    assert near == bytes(range(40))
    assert isinstance(far, Unavailable) and far.region == "jp" and "no progress" in str(far)


async def test_a_slow_but_moving_consumer_is_never_cut_off():
    fan = FanOut(source(20), 2, depth=2)
    fan.start()
    # 20 chunks at 0.05 s each: 1 s in all, over three times the no-progress deadline
    puts = [
        paced(fan.consumer(0), release=lambda: fan.release(0)),
        paced(fan.consumer(1), delay=0.05, release=lambda: fan.release(1)),
    ]
    near, far = await asyncio.wait_for(fan.gather(["ca", "jp"], puts, no_progress=0.3), 5)
    assert near == far == bytes(range(20))


async def test_a_consumer_waiting_on_a_slow_source_is_not_stalled():
    async def slow_source():
        for i in range(4):
            await asyncio.sleep(0.2)
            yield bytes([i])

    fan = FanOut(slow_source(), 2)
    fan.start()
    puts = [paced(fan.consumer(i), release=lambda i=i: fan.release(i)) for i in range(2)]
    assert await asyncio.wait_for(fan.gather(["ca", "jp"], puts, no_progress=0.15), 5) == [bytes(range(4))] * 2
