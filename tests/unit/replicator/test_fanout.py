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
