"""Calls to every region at once, where a region that hangs costs a grace period, not its timeout.

Once one region has answered, the others get ``grace`` more seconds and
then count as unavailable (an ``Unavailable`` of their own). Failures do not
start the grace: while no region has answered, each one's own deadline
holds. Callers decide what a late region means: the write path journals a
copy for it, the look-up waits for it when it may hold the newest version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from regions import RegionError
from regions import Unavailable as RegionUnavailable


async def with_grace(calls: Mapping[str, asyncio.Future[Any]], grace: float) -> set[str]:
    """Wait for every region's call, or until ``grace`` seconds after the first one succeeded.

    Returns the regions whose call succeeded (answered without a RegionError).
    Failures do not start the grace: while no region has answered, we wait
    for each one's own deadline.
    """
    loop = asyncio.get_running_loop()
    pending, deadline = set(calls.values()), None
    while pending:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break  # the grace is over
        if deadline is None and any(succeeded(f) for f in done):
            deadline = loop.time() + grace
    return {r for r, f in calls.items() if f.done() and succeeded(f)}


def succeeded(call: asyncio.Future[Any]) -> bool:
    return not call.cancelled() and not isinstance(call.exception(), RegionError)


def outcome(region: str, call: asyncio.Future[Any], grace: float, path: str) -> Any:
    """A region call's result or exception, as ``gather(return_exceptions=True)`` gives it; a call
    still running after the grace is an ``Unavailable`` of its own."""
    if call.done() and not call.cancelled():
        return call.exception() or call.result()
    return RegionUnavailable(f"no answer within {grace:g}s of the other region", region=region, name=path)


@contextlib.asynccontextmanager
async def cancelled_on_exit(calls: Mapping[str, asyncio.Future[Any]]) -> AsyncIterator[None]:
    """Cancel whatever region calls are still running when the block ends (late, or we were cancelled)."""
    try:
        yield
    finally:
        for call in calls.values():
            call.cancel()
