"""What the API accepts as a customer id, an object name and a purpose."""

from __future__ import annotations

import re

from replicator.errors import BadRequest

_CUSTOMER = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[/\\]")
_PURPOSE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_NAME_BYTES = 1024


def check_purpose(purpose: str | None) -> str:
    """A read's ``X-Purpose``: present and a purpose name."""
    if not purpose:
        raise BadRequest("the X-Purpose header is required to read")
    if not _PURPOSE.fullmatch(purpose):
        raise BadRequest("X-Purpose must be a purpose name such as 'service'")
    return purpose


def check_customer(customer: str) -> str:
    """``[A-Za-z0-9._-]{1,128}``, but not ``.`` or ``..``.

    Those two match the pattern, but a client that normalizes URLs (RFC 3986
    dot segments: curl, browsers, most HTTP libraries) turns
    ``/v1/customers/..`` into ``/v1/`` before sending it: such a customer
    could be written but never erased or exported by those clients."""
    if not _CUSTOMER.fullmatch(customer) or customer in (".", ".."):
        raise BadRequest("customer must be 1-128 characters of A-Z a-z 0-9 . _ -, and not '.' or '..'")
    return customer


def check_object_name(name: str) -> str:
    """1-1024 bytes of UTF-8, may hold ``/``, no control characters, no ``.``/``..``/empty segments
    (``.``/``..`` also between backslashes).

    Empty segments (``a//b``, ``/a``, ``a/``) are refused because an export
    writes each object as a tar member ``<class>/<name>``: ``a/`` would become
    a directory entry and ``/a`` would land on ``a``.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest("name is not valid UTF-8") from None
    if not 1 <= size <= MAX_NAME_BYTES:
        raise BadRequest(f"name must be 1-{MAX_NAME_BYTES} bytes of UTF-8, got {size}")
    if _CONTROL.search(name):
        raise BadRequest("name contains a control character")
    segments = name.split("/")
    # A backslash separates too for this check: an export is a tar of ``<class>/<name>`` members,
    # and a Windows extractor reads ``a\..\..\x`` as a path that climbs out of the directory.
    if any(seg in (".", "..") for seg in _SEPARATORS.split(name)):
        raise BadRequest("name contains a '.' or '..' segment (between '/' or '\\')")
    if "" in segments:
        raise BadRequest("name contains an empty segment (a leading, trailing or doubled '/')")
    return name
