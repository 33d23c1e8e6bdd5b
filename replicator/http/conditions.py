"""The request headers and query parameters that condition or narrow an object call (RFC 9110).

``ETag`` is the object's version in quotes; ``If-Match`` and
``If-None-Match`` carry entity tags; ``Range`` one byte range. Parsing only:
the paths decide (:mod:`replicator.paths`).
"""

from __future__ import annotations

import re

from multidict import MultiMapping

from replicator import errors
from replicator.paths.read import Span
from replicator.paths.versions import parse_version

_ENTITY_TAG = r'[ \t]*(W/)?"([\x21\x23-\x7e]*)"[ \t]*'
_TAG_LIST = re.compile(rf"{_ENTITY_TAG}(?:,{_ENTITY_TAG})*")
_NEXT_TAG = re.compile(rf"{_ENTITY_TAG},?")
_BYTES = re.compile(r"[ \t]*bytes=([0-9]{0,19})-([0-9]{0,19})[ \t]*")
_EXAMPLE = '"0001732212345678.00000.node-a"'


def etag(version: str) -> str:
    """The ``ETag`` of an object's version."""
    return f'"{version}"'


def entity_tags(value: str | None, header: str, *, weak: bool) -> tuple[str, ...] | None:
    """The versions an ``If-Match`` (``weak=False``) or ``If-None-Match`` (``weak=True``) names;
    ``("*",)`` for ``*``; None when the header is absent; 400 naming the header when it is not a list
    of entity tags. A weak tag (``W/"…"``) never matches strongly (RFC 9110 §8.8.3.2), so ``If-Match``
    drops it."""
    if value is None:
        return None
    if value.strip() == "*":
        return ("*",)
    if _TAG_LIST.fullmatch(value) is None:  # a quoted tag may hold a comma: match the whole list first
        raise errors.BadRequest(f"{header} must be '*' or a list of entity tags such as {_EXAMPLE}")
    return tuple(m[2] for m in _NEXT_TAG.finditer(value) if weak or not m[1])


def byte_span(value: str | None) -> Span | None:
    """One ``Range: bytes=a-b``, ``bytes=a-`` or ``bytes=-n``; None (the whole object, 200) for no
    header, several ranges, or one that is malformed, as RFC 9110 §14.2 allows."""
    if value is None:
        return None
    m = _BYTES.fullmatch(value)
    if m is None or not (m[1] or m[2]):
        return None
    if not m[1]:
        return Span(suffix=int(m[2]))
    start, end = int(m[1]), int(m[2]) if m[2] else None
    if end is not None and end < start:
        return None
    return Span(start, end)


def version_parameter(query: MultiMapping[str], name: str) -> str | None:
    """The version a ``?version=`` or ``?restore=`` parameter names; 400 naming it when malformed."""
    values = query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise errors.BadRequest(f"the {name} parameter must be given once")
    return parse_version(values[0], f"the {name} parameter")
