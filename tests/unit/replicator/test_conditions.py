"""Parsing the headers that condition or narrow an object call (replicator.http.conditions), and Span.resolve."""

import pytest
from multidict import MultiDict

from replicator import errors
from replicator.http.conditions import byte_span, entity_tags, etag, version_parameter
from replicator.paths.read import Span

V = "0001732212345678.00000.ca-1"


@pytest.mark.parametrize(
    "value, weak, expected",
    [
        (None, False, None),
        ("*", False, ("*",)),
        (" * ", True, ("*",)),
        (f'"{V}"', False, (V,)),
        (f'"a", "{V}"', False, ("a", V)),
        (f'W/"{V}"', False, ()),  # a weak tag never matches strongly
        (f'W/"{V}", "b"', True, (V, "b")),
        ('"a,b", "c"', False, ("a,b", "c")),  # a quoted comma is part of the tag
    ],
)
def test_entity_tags(value, weak, expected):
    assert entity_tags(value, "If-Match", weak=weak) == expected


@pytest.mark.parametrize("value", [V, '"a" "b"', '"a",', "W/a", '"a\\"b"', "**", ""])
def test_not_entity_tags_is_400_naming_the_header(value):
    with pytest.raises(errors.BadRequest, match="If-Match"):
        entity_tags(value, "If-Match", weak=False)


def test_etag_quotes_the_version():
    assert etag(V) == f'"{V}"' and entity_tags(etag(V), "If-Match", weak=False) == (V,)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bytes=0-0", Span(0, 0)),
        ("bytes=5-", Span(5, None)),
        ("bytes=-7", Span(suffix=7)),
        (" bytes=1-2 ", Span(1, 2)),
        (None, None),
        ("bytes=0-1,4-5", None),  # several ranges: the whole object
        ("bytes=9-3", None),
        ("bytes=-", None),
        ("bits=0-1", None),
        ("bytes=a-b", None),
        ("bytes=" + "9" * 20 + "-", None),
    ],
)
def test_byte_span(value, expected):
    assert byte_span(value) == expected


@pytest.mark.parametrize(
    "span, size, expected",
    [
        (Span(0, 0), 10, (0, 0)),
        (Span(3, None), 10, (3, 9)),
        (Span(3, 100), 10, (3, 9)),
        (Span(suffix=4), 10, (6, 9)),
        (Span(suffix=40), 10, (0, 9)),
    ],
)
def test_span_resolve(span, size, expected):
    assert span.resolve(size) == expected


@pytest.mark.parametrize(
    "span, size", [(Span(10, None), 10), (Span(0, 0), 0), (Span(suffix=0), 10), (Span(suffix=3), 0)]
)
def test_span_past_the_end_is_416_with_the_size(span, size):
    with pytest.raises(errors.RangeNotSatisfiable) as caught:
        span.resolve(size)
    assert caught.value.size == size


def test_version_parameter():
    assert version_parameter(MultiDict(), "version") is None
    assert version_parameter(MultiDict(version=V), "version") == V
    with pytest.raises(errors.BadRequest, match="the restore parameter"):
        version_parameter(MultiDict(restore="yesterday"), "restore")
    with pytest.raises(errors.BadRequest, match="once"):
        version_parameter(MultiDict([("version", V), ("version", V)]), "version")
