"""The requests of the API, built without I/O: path, query, headers, and whether a call is idempotent.

The sync and async clients send what these functions build and parse the
answers with :mod:`replicator.client.models`; neither builds a URL or a header
itself, so both speak the API the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from replicator.client.errors import UnexpectedResponse
from replicator.client.models import ByteRange

CHUNK = 1 << 20  # bytes read from a file or handed out of a download at a time


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # percent-encoded, from the root
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True  # may be tried again once it may have reached the service (retry.py)
    what: str = ""  # for messages: "GET alice/account/x"


def _segment(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    return quote(value, safe="")


def object_path(customer: str, data_class: str, name: str) -> str:
    """``/v1/objects/{customer}/{class}/{name}``; ``/`` in a name is sent as it is (it names the same object as
    ``%2F``), every other reserved or non-ASCII character percent-encoded as UTF-8."""
    if not name:
        raise ValueError("the object name must not be empty")
    return f"/v1/objects/{_segment(customer, 'customer')}/{_segment(data_class, 'data_class')}/{quote(name, safe='/')}"


def entity_tags(versions: str | Iterable[str]) -> str:
    """An ``If-Match``/``If-None-Match`` value: ``*``, or the versions (or ``"quoted"`` ETags) as entity tags."""
    if isinstance(versions, str):
        versions = [versions]
    tags = []
    for v in versions:
        if v == "*":
            tags.append("*")
            continue
        bare = v[1:-1] if len(v) >= 2 and v.startswith('"') and v.endswith('"') else v
        if not bare or '"' in bare or not bare.isascii() or not bare.isprintable() or " " in bare:
            raise ValueError(f"not a version or entity tag: {v!r}")
        tags.append(f'"{bare}"')
    if not tags or ("*" in tags and len(tags) > 1):
        raise ValueError("give '*' alone, or one or more versions")
    return ", ".join(tags)


def put(
    customer: str,
    data_class: str,
    name: str,
    *,
    content_type: str | None,
    content_length: int | None,
    if_none_match: bool,
    if_match: str | Iterable[str] | None,
    replayable: bool,
) -> Call:
    headers = {"Content-Type": content_type or "application/octet-stream"}
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    if if_none_match:
        headers["If-None-Match"] = "*"
    if if_match is not None:
        headers["If-Match"] = entity_tags(if_match)
    path = object_path(customer, data_class, name)
    # PUT is idempotent (RFC 9110 §9.2.2): the same body again stores the same plaintext. Only a body that
    # cannot be sent again (an iterator) makes it a single try.
    return Call("PUT", path, headers=headers, idempotent=replayable, what=f"PUT {customer}/{data_class}/{name}")


def read(
    customer: str,
    data_class: str,
    name: str,
    *,
    purpose: str,
    version: str | None = None,
    byte_range: ByteRange | None = None,
    if_none_match: str | Iterable[str] | None = None,
) -> Call:
    headers = {"X-Purpose": _purpose(purpose)}
    if byte_range is not None:
        headers["Range"] = byte_range.header()
    if if_none_match is not None:
        headers["If-None-Match"] = entity_tags(if_none_match)
    params = {"version": version} if version is not None else {}
    return Call(
        "GET",
        object_path(customer, data_class, name),
        params,
        headers,
        what=f"GET {customer}/{data_class}/{name}",
    )


def versions(customer: str, data_class: str, name: str, *, purpose: str) -> Call:
    return Call(
        "GET",
        object_path(customer, data_class, name),
        {"versions": ""},
        {"X-Purpose": _purpose(purpose)},
        what=f"GET {customer}/{data_class}/{name}?versions",
    )


def head(customer: str, data_class: str, name: str) -> Call:
    return Call("HEAD", object_path(customer, data_class, name), what=f"HEAD {customer}/{data_class}/{name}")


def delete(customer: str, data_class: str, name: str, *, if_match: str | Iterable[str] | None) -> Call:
    headers = {"If-Match": entity_tags(if_match)} if if_match is not None else {}
    return Call(
        "DELETE",
        object_path(customer, data_class, name),
        headers=headers,
        what=f"DELETE {customer}/{data_class}/{name}",
    )


def restore(customer: str, data_class: str, name: str, version: str) -> Call:
    # Each restore writes a new version: never tried again once it may have arrived.
    return Call(
        "POST",
        object_path(customer, data_class, name),
        {"restore": version},
        idempotent=False,
        what=f"POST {customer}/{data_class}/{name}?restore",
    )


def list_page(customer: str, data_class: str | None, *, cursor: str | None, limit: int | None) -> Call:
    params = {}
    if data_class is not None:
        params["class"] = data_class
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return Call("GET", f"/v1/objects/{_segment(customer, 'customer')}", params, what=f"list {customer}")


def erase(customer: str) -> Call:
    # Erasing an erased customer answers the first erasure's key_destroyed_at: idempotent.
    return Call("DELETE", f"/v1/customers/{_segment(customer, 'customer')}", what=f"erase {customer}")


def erasure(erasure_id: str) -> Call:
    return Call("GET", f"/v1/erasures/{_segment(erasure_id, 'erasure id')}", what=f"erasure {erasure_id}")


def export(customer: str) -> Call:
    return Call("GET", f"/v1/customers/{_segment(customer, 'customer')}/export", what=f"export {customer}")


def readyz() -> Call:
    return Call("GET", "/readyz", what="readyz")


def _purpose(purpose: str) -> str:
    if not purpose:
        raise ValueError("purpose must name why the caller reads (a purpose the class allows)")
    return purpose


def parse_json(body: bytes, status: int, headers: Mapping[str, str], what: str) -> object:
    """The JSON of a (read) answer to ``what``; UnexpectedResponse when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        raise UnexpectedResponse(
            f"{what}: answered {status} without JSON", status=status, request_id=headers.get("x-request-id")
        ) from None
