"""The client's exceptions: one class per error code of the API, and two for answers that are not the API's.

The service answers every error as ``{"error": code, "message": text}`` (the
codes: ``replicator/http/openapi.yaml``, ``Error``). :func:`error_from_answer`
maps each code to exactly one class (``bad_request`` → :class:`BadRequest`,
…); an answer with no body (``HEAD``) is mapped by its status, which the code
follows from. An answer that is not in that shape (a proxy's HTML page, an
unknown code) is :class:`UnexpectedResponse`; no answer at all (refused,
reset, timed out, a download cut off) is :class:`TransportError`.

Every exception carries the status, code, message, the ``X-Request-Id`` to
quote to an operator, and ``retry_after`` (seconds) when the answer said when
to try again.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping


class ReplicatorError(Exception):
    """Any failure of a client call."""

    status: int = 0
    code: str = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        head = f"{self.status} {self.code}: " if self.status else ""
        return f"{head}{self.message}{where}"


class ApiError(ReplicatorError):
    """The service answered with one of its error codes."""


class BadRequest(ApiError):
    """400 (and 408, a request body that stopped arriving): the message names what was wrong."""

    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    """401: no token, or one the service does not know."""

    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    """403: the token lacks the scope, or the purpose may not read the class."""

    status, code = 403, "forbidden"


class NotFound(ApiError):
    """404: no such object (never written, or deleted), version or erasure."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    """405: the path has no such method."""

    status, code = 405, "method_not_allowed"


class Gone(ApiError):
    """410: past its class's retention, or the customer was erased."""

    status, code = 410, "gone"


class PreconditionFailed(ApiError):
    """412: ``If-None-Match: *`` and the object exists, or ``If-Match`` and it is another version or missing."""

    status, code = 412, "precondition_failed"


class TooLarge(ApiError):
    """413: the body is over the service's ``max_object_bytes``, or what its gzip, zip or PDF content decodes to
    passes a bomb limit (the message names it); nothing was stored."""

    status, code = 413, "too_large"


class RangeNotSatisfiable(ApiError):
    """416: the range starts at or past the end; ``size`` is the object's size (from ``Content-Range``)."""

    status, code = 416, "range_not_satisfiable"
    size: int | None = None


class SinRefused(ApiError):
    """422: the body holds what looks like a Canadian SIN (also inside gzip, zip, PDF or UTF-16) and the class may
    not store one, or part of it cannot be scanned (an encrypted zip entry; the message says what) and the class
    refuses that, or its containers nest too deep; nothing was stored."""

    status, code = 422, "sin_refused"


class InternalError(ApiError):
    """500: a fault in the service (its log has the request id)."""

    status, code = 500, "internal"


class Unavailable(ApiError):
    """503: no region could serve or store it, the audit log cannot be written, or the service is busy."""

    status, code = 503, "unavailable"


class UnexpectedResponse(ReplicatorError):
    """An answer that is not the API's: not its error shape, an unknown code, or a body that does not parse."""

    code = "unexpected_response"


class TransportError(ReplicatorError):
    """No complete answer: the connection was refused, reset or timed out, or a download was cut off."""

    code = "transport"


#: Each error code of the API and its exception, one to one.
ERRORS: Mapping[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Gone,
        PreconditionFailed,
        TooLarge,
        RangeNotSatisfiable,
        SinRefused,
        InternalError,
        Unavailable,
    )
}
_BY_STATUS: Mapping[int, type[ApiError]] = {cls.status: cls for cls in ERRORS.values()} | {408: BadRequest}


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` value (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) asks to wait."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is not one
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_answer(status: int, headers: Mapping[str, str], body: bytes) -> ReplicatorError:
    """The exception for an error answer (``headers`` looked up case-insensitively by the caller's mapping)."""
    request_id = headers.get("x-request-id")
    wait = retry_after(headers.get("retry-after"))
    code, message = _error_fields(body)
    cls: type[ReplicatorError] | None
    if code is not None:
        cls = ERRORS.get(code)
        if cls is None:
            message = f"unknown error code {code!r}: {message}"
    elif not body:  # HEAD answers and some proxies: the code follows from the status
        cls = _BY_STATUS.get(status)
        message = f"HTTP {status} with no body"
    else:
        cls = None
        message = f"HTTP {status}, not an API error: {body[:200].decode('utf-8', 'replace')!r}"
    if cls is None:
        cls = UnexpectedResponse
    error = cls(message, status=status, request_id=request_id, retry_after=wait)
    if isinstance(error, RangeNotSatisfiable):
        error.size = _unsatisfied_size(headers.get("content-range"))
    return error


def is_api_error(body: bytes) -> bool:
    """Whether ``body`` is in the API's error shape."""
    return _error_fields(body)[0] is not None


def _error_fields(body: bytes) -> tuple[str | None, str]:
    try:
        doc = json.loads(body)
    except ValueError:
        return None, ""
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and isinstance(doc.get("message"), str):
        return doc["error"], doc["message"]
    return None, ""


def _unsatisfied_size(value: str | None) -> int | None:
    """The size in ``Content-Range: bytes */<size>``."""
    if value is None or not value.startswith("bytes */"):
        return None
    size = value.removeprefix("bytes */").strip()
    return int(size) if size.isascii() and size.isdigit() else None
