"""Waiting for what becomes true in the background: poll a check until it holds, never sleep and hope.

A test that sleeps a fixed time and then asserts is slow when the machine is
fast and flaky when it is slow. ``eventually`` asks again every ``interval``
until the check holds, and fails after ``timeout`` with the reason the last
attempt gave.

A check is a function of no arguments, sync or async. It holds when it
returns something truthy, which ``eventually`` returns; anything falsy
(``False``, ``None``, ``[]``) means "not yet". A check may also assert: an
``AssertionError`` means "not yet" too, and on timeout the last one is raised,
so the failure says what was still wrong. (A check that only asserts ends with
``return True``: forgetting it fails loudly at the timeout, never passes by
accident.)

Only what becomes true is worth polling: a check that something did *not*
happen ("the log holds no secret") holds at once, so it is no use here.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Check = Callable[[], Any | Awaitable[Any]]


async def eventually(check: Check, *, timeout: float = 10.0, interval: float = 0.1, what: str = "") -> Any:
    """Call ``check`` until it returns something truthy (see the module) and return that; fail after ``timeout``
    seconds, with the check's last ``AssertionError`` if it raised one."""
    deadline = time.monotonic() + timeout
    while True:
        last: AssertionError | None = None
        try:
            answer = check()
            if inspect.isawaitable(answer):
                answer = await answer
        except AssertionError as e:
            last = e
        else:
            if answer:
                return answer
        if time.monotonic() > deadline:
            raise _timed_out(last, timeout, what)
        await asyncio.sleep(interval)


def _timed_out(last: AssertionError | None, timeout: float, what: str) -> AssertionError:
    if last is None:
        return AssertionError(f"not within {timeout:g}s: {what or 'the check'}")
    last.add_note(f"(still failing after {timeout:g}s{': ' + what if what else ''})")
    return last
