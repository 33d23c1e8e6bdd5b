"""One retry policy for every driver, applied at the driver edge and nowhere else.

Only :class:`~regions.base.Unavailable` is retried, and only for calls the
driver marks repeatable (a put whose body is a one-shot iterator is not).
Every attempt runs under a deadline, so a store that hangs becomes
``Unavailable`` instead of a hung caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from .base import Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # total tries, the first included
    initial_wait: float = 0.2  # seconds before the second try; doubles each time
    max_wait: float = 2.0
    timeout: float = 30.0  # deadline of one attempt, in seconds

    @classmethod
    def fast(cls) -> RetryPolicy:
        """For tests that point at a dead store: fail in about a second."""
        return cls(attempts=2, initial_wait=0.05, max_wait=0.1, timeout=2.0)


async def call(
    policy: RetryPolicy,
    fn: Callable[[], Awaitable[T]],
    *,
    repeatable: bool = True,
    region: str = "",
    name: str | None = None,
) -> T:
    """Run ``fn`` under ``policy``: a deadline per attempt, retries on ``Unavailable``."""

    async def attempt() -> T:
        try:
            return await asyncio.wait_for(fn(), policy.timeout)
        except TimeoutError as e:  # wait_for's, not the store's: the store hung
            raise Unavailable(f"no answer within {policy.timeout:g}s", region=region, name=name) from e

    if not repeatable:
        return await attempt()
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
        retry=tenacity.retry_if_exception_type(Unavailable),
        reraise=True,
    )
    return await retrying(attempt)
