"""Errors the service answers with: each has an HTTP status and a short code.

Messages say what was wrong in the request and never echo secrets, tokens,
plaintext or customer data beyond what the caller sent in the URL. Names
differ from the region taxonomy's (``regions.NotFound`` is a store's answer;
``Missing`` is the service's 404), so neither is ever mistaken for the other.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class Missing(ServiceError):
    status, code = 404, "not_found"


class Gone(ServiceError):
    status, code = 410, "gone"


class ConditionFailed(ServiceError):
    status, code = 412, "precondition_failed"


class RangeNotSatisfiable(ServiceError):
    """A ``Range`` that starts at or past the end of the object: 416 with ``Content-Range: bytes */size``."""

    status, code = 416, "range_not_satisfiable"

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


class NotModified(Exception):
    """``If-None-Match`` named the version a read would send: the handler answers 304, no body (not
    an error, so not a :class:`ServiceError`)."""

    def __init__(self, version: str):
        super().__init__(version)
        self.version = version


class TooLarge(ServiceError):
    status, code = 413, "too_large"


class SinRefused(ServiceError):
    status, code = 422, "sin_refused"


class ServiceUnavailable(ServiceError):
    status, code = 503, "unavailable"
