"""The client's exceptions against the service's error codes: one class per code, none missing, none extra."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path

import pytest
import yaml

import replicator
from replicator import errors as service_errors
from replicator.client import errors as client_errors
from replicator.client.errors import (
    ERRORS,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RangeNotSatisfiable,
    Unavailable,
    UnexpectedResponse,
    error_from_answer,
    retry_after,
)

DOCUMENT = Path(replicator.__file__).parent / "http" / "openapi.yaml"


def _answer(code: str, message: str = "what was wrong") -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


def test_the_codes_are_the_api_documents_one_to_one():
    document = yaml.safe_load(DOCUMENT.read_text())
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert set(ERRORS) == set(codes)
    assert len(set(ERRORS.values())) == len(ERRORS)  # no class serves two codes


def test_every_error_the_service_raises_has_its_class_and_status():
    raised = {
        cls.code: cls.status
        for cls in vars(service_errors).values()
        if isinstance(cls, type) and issubclass(cls, service_errors.ServiceError)
    }
    for code, status in raised.items():
        assert code in ERRORS, f"the service answers {code!r}, which the client does not know"
        assert ERRORS[code].status == status


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_each_code_maps_to_its_class(code):
    cls = ERRORS[code]
    error = error_from_answer(cls.status, {"x-request-id": "abc"}, _answer(code))
    assert type(error) is cls and error.status == cls.status and error.code == code
    assert error.message == "what was wrong" and error.request_id == "abc"
    assert "abc" in str(error) and code in str(error)


def test_an_answer_without_a_body_maps_by_its_status():
    assert type(error_from_answer(404, {}, b"")) is NotFound  # HEAD
    assert type(error_from_answer(405, {}, b"")) is MethodNotAllowed
    assert type(error_from_answer(500, {}, b"")) is InternalError
    assert type(error_from_answer(408, {}, b"")) is BadRequest  # a request body that stopped arriving
    assert type(error_from_answer(502, {}, b"")) is UnexpectedResponse


def test_answers_that_are_not_the_apis_are_unexpected():
    html = error_from_answer(502, {}, b"<html>Bad Gateway</html>")
    assert type(html) is UnexpectedResponse and html.status == 502 and "Bad Gateway" in html.message
    unknown = error_from_answer(400, {}, _answer("brand_new_code"))
    assert type(unknown) is UnexpectedResponse and "brand_new_code" in unknown.message
    assert type(error_from_answer(400, {}, b'{"error": 1}')) is UnexpectedResponse


def test_a_416_carries_the_objects_size():
    error = error_from_answer(416, {"content-range": "bytes */11"}, _answer("range_not_satisfiable"))
    assert isinstance(error, RangeNotSatisfiable) and error.size == 11


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after("1") == 1.0 and retry_after(" 120 ") == 120.0
    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= retry_after(later, now=now) <= 31
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-1", "1.5", "Wed, 99 Foo 2026 00:00:00"):
        assert retry_after(bad) is None, bad
    error = error_from_answer(503, {"retry-after": "2"}, _answer("unavailable"))
    assert isinstance(error, Unavailable) and error.retry_after == 2.0


def test_the_module_defines_no_exception_outside_the_table():
    api_errors = {
        v
        for v in vars(client_errors).values()
        if isinstance(v, type) and issubclass(v, client_errors.ApiError) and v is not client_errors.ApiError
    }
    assert api_errors == set(ERRORS.values())
