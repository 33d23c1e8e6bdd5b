"""When a client call is tried again, and how long it waits: one tenacity policy for the sync and async clients.

A call is tried again only when doing so cannot change what the first try
did, or when the first try cannot have reached the service:

* idempotent or conditional calls (``GET``, ``HEAD``, ``DELETE``, an erasure,
  and a ``PUT`` whose body can be sent again, bytes or a seekable file,
  with or without ``If-Match``/``If-None-Match``), on 429, 500, 502, 503 and
  504 and on a connection refused, reset or timed out;
* every call, a restore and a ``PUT`` from an iterator included, only when
  the connection could not be opened (nothing was sent).

A ``Retry-After`` on the answer is honoured: the next try waits that long,
never less; when it asks for more than ``max_retry_after`` the call gives up
at once with that answer's exception (its ``retry_after`` says when). Without
it, exponential backoff with full jitter. A download that fails once bytes
have reached the caller is never tried again (the caller holds a part).

What "could not be opened" means for each HTTP library is decided here, once
(:func:`httpx_transport_error` for ``Client``, :func:`aiohttp_transport_error`
for ``AsyncClient``): a failure to connect (refused, DNS, TLS handshake, a
connect timeout) is :class:`NotSent`; anything after the connection was open
(the service hung up, a read timed out, a body cut off) is a plain
:class:`~replicator.client.errors.TransportError`, because the request may
have arrived and been acted on.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import tenacity

from replicator.client.errors import ApiError, ReplicatorError, TransportError, UnexpectedResponse

T = TypeVar("T")

#: Answers worth another try of an idempotent call (rclone's list for Swift, less 401/408/409).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all (1: never again); backoff from ``backoff_initial`` doubling up to
    ``backoff_max`` seconds; a ``Retry-After`` over ``max_retry_after`` seconds is not waited for."""

    attempts: int = 4
    backoff_initial: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.backoff_initial, self.backoff_max, self.max_retry_after) < 0:
            raise ValueError("waits must not be negative")


DEFAULT_RETRY = RetryPolicy()


class NotSent(TransportError):
    """The connection could not be opened: the request never left, so any call may be tried again."""


def worth_retrying(error: BaseException, idempotent: bool) -> bool:
    if isinstance(error, NotSent):
        return True
    if not idempotent:
        return False
    if isinstance(error, ApiError | UnexpectedResponse):
        return error.status in RETRY_STATUSES
    return isinstance(error, TransportError)


def httpx_transport_error(error: httpx.TransportError, what: str) -> TransportError:
    """Our exception for an httpx one (raise it ``from`` the original)."""
    not_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
    return _transport_error(error, what, not_sent)


#: What aiohttp raises when there is no complete answer; AsyncClient maps each with aiohttp_transport_error.
#: (``TimeoutError``: aiohttp's own timeouts derive from it, and a caller's session may set a ``total``.)
AIOHTTP_TRANSPORT_ERRORS = (
    aiohttp.ClientConnectionError,  # refused, reset, disconnected, timed out (ClientOSError, Server*Error)
    aiohttp.ClientPayloadError,  # a body cut off or malformed
    aiohttp.ClientResponseError,  # an answer that does not parse as HTTP
    TimeoutError,
)


def aiohttp_transport_error(error: BaseException, what: str) -> TransportError:
    """Our exception for one of :data:`AIOHTTP_TRANSPORT_ERRORS` (raise it ``from`` the original).

    Only a failure to connect (``ClientConnectorError`` and its DNS, TLS, proxy subclasses, and a connect
    timeout, ``ConnectionTimeoutError``) is :class:`NotSent`. ``ServerDisconnectedError`` is not: the service
    may have read the request and acted on it before it hung up."""
    not_sent = isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return _transport_error(error, what, not_sent)


def _transport_error(error: BaseException, what: str, not_sent: bool) -> TransportError:
    cls = NotSent if not_sent else TransportError
    return cls(f"{what}: {type(error).__name__}: {error}" if str(error) else f"{what}: {type(error).__name__}")


class _Wait:
    """Retry-After when the answer gave one, else exponential backoff with full jitter."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def __call__(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, ReplicatorError) and error.retry_after is not None:
            return error.retry_after
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)


class _Stop:
    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.policy.attempts:
            return True
        error = state.outcome.exception() if state.outcome is not None else None
        return (
            isinstance(error, ReplicatorError)
            and error.retry_after is not None
            and error.retry_after > self.policy.max_retry_after
        )


def tenacity_args(policy: RetryPolicy, idempotent: bool) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying`` for one call."""
    return {
        "retry": tenacity.retry_if_exception(lambda e: worth_retrying(e, idempotent)),
        "wait": _Wait(policy),
        "stop": _Stop(policy),
        "reraise": True,  # the caller sees our typed exception, never tenacity's RetryError
    }


async def tried(policy: RetryPolicy, idempotent: bool, attempt: Callable[[], Awaitable[T]]) -> T:
    """``await attempt()``, tried again as the policy and :func:`worth_retrying` allow (AsyncClient's calls).

    The first try runs outside tenacity: its loop costs about as much CPU as aiohttp's whole request, and
    nearly every call succeeds at once. A first failure is handed to tenacity as its first attempt's outcome,
    so every wait and stop is decided there, exactly as when tenacity ran it."""
    try:
        return await attempt()
    except ReplicatorError as e:
        first: ReplicatorError | None = e
        if not worth_retrying(e, idempotent):
            raise

    async def again() -> T:
        nonlocal first
        if first is not None:
            error, first = first, None
            raise error
        return await attempt()

    async for state in tenacity.AsyncRetrying(**tenacity_args(policy, idempotent)):
        with state:
            return await again()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
