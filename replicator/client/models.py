"""What the client's calls return: typed, frozen records parsed from the service's answers.

Each ``from_*`` parses one answer of ``replicator/http/openapi.yaml`` and
raises :class:`~replicator.client.errors.UnexpectedResponse` when a field is
missing or of the wrong type, so a caller never meets a half-parsed record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from replicator.client.errors import UnexpectedResponse


@dataclass(frozen=True)
class ByteRange:
    """One byte range of a read: ``ByteRange(start, end)`` with ``end`` included (``None``: to the end),
    or ``ByteRange.last(n)``, the last ``n`` bytes."""

    start: int | None
    end: int | None = None

    def __post_init__(self) -> None:
        if self.start is None:
            if self.end is None or self.end < 1:
                raise ValueError("a suffix range needs a length of at least 1 (ByteRange.last(n))")
        elif self.start < 0 or (self.end is not None and self.end < self.start):
            raise ValueError(f"not a byte range: start {self.start}, end {self.end}")

    @classmethod
    def last(cls, length: int) -> ByteRange:
        return cls(None, length)

    def header(self) -> str:
        """The ``Range`` header's value."""
        if self.start is None:
            return f"bytes=-{self.end}"
        return f"bytes={self.start}-" + ("" if self.end is None else str(self.end))


@dataclass(frozen=True)
class WriteResult:
    """A ``PUT`` or a restore: the new version, its plaintext size, and where it is held."""

    version: str
    size: int
    replication: str  # "complete" | "degraded"
    regions: Mapping[str, str]  # region -> "stored" | "pending"

    @property
    def etag(self) -> str:
        return etag(self.version)


@dataclass(frozen=True)
class DeleteResult:
    version: str  # the tombstone's
    regions: Mapping[str, str]  # region -> "deleted" | "pending"


@dataclass(frozen=True)
class ObjectHead:
    """A ``HEAD``: metadata and replication state, nothing decrypted."""

    version: str
    size: int
    data_class: str
    replication: str  # "complete" | "pending"
    regions: Mapping[str, str]  # region -> "current" | "stale" | "missing" | "unavailable"

    @property
    def etag(self) -> str:
        return etag(self.version)


@dataclass(frozen=True)
class ContentRange:
    """``Content-Range: bytes first-last/total`` of a 206."""

    first: int
    last: int
    total: int


@dataclass(frozen=True)
class ReadInfo:
    """The headers of a read: the version sent, its size in this answer, and the range when partial.

    ``not_modified`` is a 304 (``if_none_match`` named the version): no body, ``size`` 0."""

    version: str
    size: int
    content_type: str
    content_range: ContentRange | None = None
    not_modified: bool = False

    @property
    def etag(self) -> str:
        return etag(self.version)


@dataclass(frozen=True)
class ObjectEntry:
    name: str
    data_class: str
    version: str
    size: int


@dataclass(frozen=True)
class ListPage:
    objects: tuple[ObjectEntry, ...]
    cursor: str | None  # pass it back for the next page; None on the last


@dataclass(frozen=True)
class VersionEntry:
    """One kept version (``?versions``), newest first; a delete marker has ``deleted`` and size 0."""

    version: str
    size: int
    deleted: bool
    written: datetime
    current: bool


@dataclass(frozen=True)
class ErasureReceipt:
    erasure: str
    key_destroyed_at: datetime


@dataclass(frozen=True)
class RegionProgress:
    deleted: int
    remaining: int  # -1 before the first pass ends


@dataclass(frozen=True)
class ErasureStatus:
    erasure: str
    state: str  # "running" | "done"
    key_destroyed_at: datetime
    regions: Mapping[str, RegionProgress]


@dataclass(frozen=True)
class Readiness:
    status: str  # "ok" | "degraded" | "unavailable"
    checks: Mapping[str, str]


def etag(version: str) -> str:
    """The entity tag of a version, as ``ETag`` sends it and ``if_match``/``if_none_match`` take it."""
    return f'"{version}"'


# -- parsing ---------------------------------------------------------------------------------------


def _field(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UnexpectedResponse(f"the answer's {key!r} is not a {kind.__name__}: {value!r}")
    return value


def _object(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise UnexpectedResponse(f"{what} is not a JSON object")
    return doc


def _str_map(doc: Mapping[str, Any], key: str) -> Mapping[str, str]:
    value = _object(doc.get(key), repr(key))
    if not all(isinstance(v, str) for v in value.values()):
        raise UnexpectedResponse(f"the answer's {key!r} holds a value that is not a string")
    return dict(value)


def _time(doc: Mapping[str, Any], key: str) -> datetime:
    try:
        return datetime.fromisoformat(_field(doc, key, str))
    except ValueError:
        raise UnexpectedResponse(f"the answer's {key!r} is not a date-time") from None


def write_result(doc: Any) -> WriteResult:
    d = _object(doc, "a write's answer")
    return WriteResult(
        _field(d, "version", str), _field(d, "size", int), _field(d, "replication", str), _str_map(d, "regions")
    )


def delete_result(doc: Any) -> DeleteResult:
    d = _object(doc, "a delete's answer")
    return DeleteResult(_field(d, "version", str), _str_map(d, "regions"))


def list_page(doc: Any) -> ListPage:
    d = _object(doc, "a listing")
    objects = tuple(
        ObjectEntry(_field(o, "name", str), _field(o, "class", str), _field(o, "version", str), _field(o, "size", int))
        for o in (_object(o, "a listing entry") for o in _field(d, "objects", list))
    )
    cursor = d.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise UnexpectedResponse("the listing's cursor is not a string")
    return ListPage(objects, cursor)


def version_list(doc: Any) -> list[VersionEntry]:
    d = _object(doc, "a versions list")
    return [
        VersionEntry(
            _field(v, "version", str),
            _field(v, "size", int),
            _field(v, "deleted", bool),
            _time(v, "written"),
            _field(v, "current", bool),
        )
        for v in (_object(v, "a version") for v in _field(d, "versions", list))
    ]


def erasure_receipt(doc: Any) -> ErasureReceipt:
    d = _object(doc, "an erasure receipt")
    return ErasureReceipt(_field(d, "erasure", str), _time(d, "key_destroyed_at"))


def erasure_status(doc: Any) -> ErasureStatus:
    d = _object(doc, "an erasure's status")
    regions = {
        name: RegionProgress(_field(p, "deleted", int), _field(p, "remaining", int))
        for name, p in ((n, _object(p, "a region's progress")) for n, p in _object(d.get("regions"), "regions").items())
    }
    return ErasureStatus(_field(d, "erasure", str), _field(d, "state", str), _time(d, "key_destroyed_at"), regions)


def readiness(doc: Any) -> Readiness:
    d = _object(doc, "a readiness answer")
    return Readiness(_field(d, "status", str), _str_map(d, "checks"))


def object_head(headers: Mapping[str, str]) -> ObjectHead:
    try:
        regions = dict(
            part.strip().split("=", 1) for part in headers.get("x-replication-regions", "").split(",") if part.strip()
        )
        return ObjectHead(
            version=headers["x-version"],
            size=int(headers["x-object-size"]),
            data_class=headers["x-data-class"],
            replication=headers["x-replication"],
            regions=regions,
        )
    except (KeyError, ValueError) as e:
        raise UnexpectedResponse(f"a HEAD answer without a well-formed {e} header") from None


def read_info(status: int, headers: Mapping[str, str]) -> ReadInfo:
    """The headers of a 200, 206 or 304 to a read."""
    version = headers.get("x-version")
    if version is None:
        raise UnexpectedResponse(f"a read answered {status} without X-Version")
    if status == 304:
        return ReadInfo(version, 0, "", not_modified=True)
    try:
        size = int(headers["content-length"])
    except (KeyError, ValueError):
        raise UnexpectedResponse("a read's answer has no Content-Length") from None
    content_range = None
    if status == 206:
        content_range = _content_range(headers.get("content-range", ""))
    return ReadInfo(version, size, headers.get("content-type", "application/octet-stream"), content_range)


def _content_range(value: str) -> ContentRange:
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    try:
        if unit != "bytes":
            raise ValueError(value)
        return ContentRange(int(first), int(last), int(total))
    except ValueError:
        raise UnexpectedResponse(f"a 206 with a malformed Content-Range {value!r}") from None
