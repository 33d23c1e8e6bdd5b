"""The Region contract: one narrow async interface over an object store.

Every region (``local``, ``azure``, ``swift``) is a :class:`Region`: the
portable layer (:mod:`regions.portable`) does what is the same for every store
(name, metadata and condition checks, digest verification of what is read)
in front of a driver that provides only its store's primitives
(:mod:`regions.driver`). ``tests/conformance/`` holds the one suite that checks
each of them. The docstrings below are the specification; when a driver and
this file disagree, the driver is wrong.

Names
    A name is a ``str`` of 1 to 1024 bytes of UTF-8 in a portable set: no
    control characters (C0, DEL, U+FFFE, U+FFFF), no ``\\``, and no ``.`` or
    ``..`` path segments. Every store can hold such a name verbatim (Azure
    turns ``\\`` into ``/``, HTTP clients collapse dot segments after signing,
    and XML listings cannot carry control characters), so drivers store it,
    including spaces, ``% + # ?``, ``/`` and non-ASCII letters, and give it
    back unchanged. Any other name is a ``ValueError`` before any I/O, in every
    driver alike (the portable layer checks it). (The replicator only ever writes opaque tag names.)

Metadata
    ``meta`` is a flat ``dict[str, str]``. Keys match ``[a-z][a-z0-9_]{0,31}``
    (Azure wants C# identifiers, Swift and HTTP want case-insensitive ASCII), at
    most 16 of them; values are any text. Keys and values together stay under
    :data:`MAX_META_BYTES` of UTF-8. A put that breaks these rules raises
    ``ValueError`` before any I/O. Keys starting ``x_`` are reserved for
    drivers.

Digest
    ``ObjectInfo.digest`` is the hex SHA-256 of the stored bytes, computed by
    the driver while the body streams in, and kept with the object (the stores'
    own MD5s and ETags are not comparable across stores). ``get`` recomputes it
    while streaming out (the portable layer, for every driver alike) and raises
    :class:`Corrupt` at the end of the stream if the bytes differ: a consumer
    must not trust a body before the iterator is exhausted. (Not on a ranged
    ``get``: see "Byte ranges".)

Byte ranges
    ``get(name, byte_range=ByteRange(start, end))`` reads bytes ``start``
    through ``end`` of the object, *both included* (HTTP's ``Range:
    bytes=start-end``; :meth:`ByteRange.of` builds one from an offset and a
    length). A range that runs past the end is clipped to the object: the
    reader yields bytes ``start`` through ``size - 1``. A range that starts at
    or after the end (every range of an empty object) is
    :class:`RangeNotSatisfiable`, raised by ``get`` itself before any byte is
    handed out: that needs the object's size, so it is an answer of the store,
    like :class:`NotFound`. A malformed range (not a :class:`ByteRange`, a
    negative start, an end before the start) is a ``ValueError`` before any
    I/O, like a bad name: :class:`ByteRange` refuses one when it is made.
    The ``ObjectInfo`` of a ranged ``get`` still describes the whole object
    (``size`` is the whole size, ``digest`` the whole digest).

    The whole-object digest is *not* verified on a ranged read (it cannot be
    without reading everything): the caller authenticates what it reads. The
    replicator's segments carry their own GCM tags, which is what makes
    reading one segment of an object safe. The portable layer still checks
    that the reader yields exactly the clipped range's length (else
    :class:`Corrupt`). Drivers fetch only the range from the store: a file
    seek, Azure's ``x-ms-range``, Swift's ``Range`` (static large objects
    included: Swift fetches only the segments that hold the range).

Conditional writes
    ``head``, ``get``, ``list`` and ``put`` give each object an ``etag``: an
    opaque token naming one stored write of it. Every put makes a new one, even
    of the same bytes and metadata, and the listing carries the same token as
    ``head``. ``put(..., if_match=etag)`` and ``delete(..., if_match=etag)``
    act only while the object is still that write, and raise
    :class:`PreconditionFailed` otherwise; ``put(..., if_none_match=True)``
    only creates. A caller that decided to overwrite or delete from an earlier
    ``head`` or listing passes that ``etag``, so a write that raced it in
    between is never lost (the reconciler's "re-check before destroying").

    Where the store checks the condition itself, the check and the write are
    one atomic step: ``local`` (inside its SQLite transaction), ``azure``
    (``If-Match`` / ``If-None-Match: *``). Swift only has ``If-None-Match: *``
    on PUT and no condition on DELETE (its proxy refuses an ETag in
    If-None-Match, and ``If-Match`` only shapes GET/HEAD answers), so the
    ``swift`` driver HEADs just before the PUT or DELETE it conditions and
    leaves a *residual window*: a write landing between that HEAD's answer and
    the request can still be replaced (see :mod:`regions.swift`). Callers that
    share a process with the writers close it with a name lock.

Errors
    Every driver maps its SDK's failures once, in its ``_translate`` function,
    onto :class:`RegionError` subclasses, raised ``from`` the original and
    naming the region and the object. Retries of :class:`Unavailable` happen
    inside the driver (see :mod:`regions._retry`) and only for calls that can
    be repeated; what reaches the caller has already been retried.

Optional abilities
    What only some stores can do is declared in :class:`Features` (rclone's
    ``Features``), never found by probing for methods: ``region.features``.
    Wrappers pass their inner region's features through.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

MAX_NAME_BYTES = 1024
MAX_META_KEYS = 16
MAX_META_BYTES = 2048
_META_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_NOT_PORTABLE = re.compile(r"[\x00-\x1f\x7f\ufffe\uffff\\]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")  # a path segment that is "." or ".."

Body = bytes | AsyncIterator[bytes]
#: What ``get`` hands out: the object's bytes, which the caller consumes or closes early (``aclose``).
Reader = AsyncGenerator[bytes, None]


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    ``list`` yields the same fields as ``head``: size, digest and the whole
    user metadata travel with the listing, so a reconciler never needs one
    HEAD per object.
    """

    name: str
    size: int
    digest: str
    meta: Mapping[str, str] = field(default_factory=dict)
    modified: datetime | None = None
    #: The token of this stored write, for ``if_match`` (see "Conditional writes" above).
    etag: str = ""


class RegionError(Exception):
    """Base of the error taxonomy. ``str(err)`` names the region and object."""

    def __init__(self, message: str, *, region: str = "", name: str | None = None):
        self.region = region
        self.name = name
        where = f"region {region!r}" if region else "region"
        if name is not None:
            where += f", object {name!r}"
        super().__init__(f"{where}: {message}")


class NotFound(RegionError):
    """The object does not exist."""


class PreconditionFailed(RegionError):
    """A conditional call's condition was false: ``if_none_match`` and the object exists, or
    ``if_match`` and the object is missing (put) or is another write (put, delete). Nothing changed."""


class PermissionDenied(RegionError):
    """The store refused our credentials (after one re-authentication, where the driver has one)."""


class Unavailable(RegionError):
    """The store could not be reached or answered with a transient failure; retrying later may work."""


class Corrupt(RegionError):
    """The stored bytes do not match the digest kept with them, or the object is malformed."""


class RangeNotSatisfiable(RegionError):
    """A ranged ``get`` whose start is at or after the end of the object (any range of an empty one).

    Not retryable: the object is shorter than the caller thought. Nothing was read.
    """


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` through ``end`` of an object, **both included** (as in HTTP's ``Range``).

    ``ByteRange(0, 0)`` is the first byte; ``ByteRange.of(offset, length)``
    is ``length`` bytes from ``offset``. Making a malformed one (not ints, a
    negative start, ``end < start``) raises ``ValueError``, so a bad range
    never reaches a store. See "Byte ranges" in :mod:`regions.base` for what
    ``get`` does with one.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        check_range(self)

    @classmethod
    def of(cls, offset: int, length: int) -> ByteRange:
        """``length`` (at least 1) bytes from ``offset``."""
        if type(length) is not int or length < 1:
            raise ValueError(f"a byte range is at least 1 byte long, not {length!r}")
        return cls(offset, offset + length - 1)

    @property
    def length(self) -> int:
        """How many bytes the range names, before clipping."""
        return self.end - self.start + 1

    def within(self, size: int) -> ByteRange | None:
        """This range clipped to an object of ``size`` bytes; None if it starts at or after the end."""
        if self.start >= size:
            return None
        return self if self.end < size else ByteRange(self.start, size - 1)


@dataclass
class SegmentSweep:
    """What a segment sweep did: orphan uploads deleted (with their segments and bytes); uploads
    in use, too young to judge, or whose object could not be looked at; and segments that do not
    name their object."""

    uploads: int = 0
    segments: int = 0
    bytes: int = 0
    kept: int = 0
    young: int = 0
    failed: int = 0
    unattributed: int = 0


class SegmentSweeper(Protocol):
    """Deletes the parts of large uploads that no object refers to any more (Swift's segments).

    Only uploads at least ``older_than`` old are looked at (``None``: the
    driver's default, long enough that no upload is still under way), and
    with ``key_prefix`` only those made for names under it.
    """

    async def __call__(self, *, older_than: timedelta | None = None, key_prefix: str = "") -> SegmentSweep: ...


@dataclass(frozen=True)
class Features:
    """The optional abilities of a region; ``None`` where the store has no use for one."""

    #: Set by stores whose large objects can leave orphan parts behind (Swift); the reconciler
    #: and the erasure run it. Stores that commit parts atomically (Azure, local) leave it None.
    sweep_segments: SegmentSweeper | None = None


#: The features of a region that has none of the optional abilities.
NO_FEATURES = Features()


@runtime_checkable
class Region(Protocol):
    """An object store in one geographic region.

    Guarantees every driver gives:

    * ``put`` is atomic: a reader sees the old object, or the whole new one,
      never a part. A put that fails or is cancelled leaves the old object (or
      no object) in place. Concurrent puts to one name leave exactly one of
      the bodies, whole.
    * ``delete`` of a missing object succeeds (deletes are idempotent).
    * ``list`` yields objects in ascending byte order of the UTF-8 name, in
      pages, in constant memory.
    """

    #: Short label used in errors, logs and metrics, e.g. ``"ca"`` or ``"jp"``.
    name: str
    #: What this region can do beyond the primitives below.
    features: Features

    async def put(
        self,
        name: str,
        body: Body,
        meta: Mapping[str, str],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """Store ``body`` under ``name`` with user metadata ``meta``; return what was stored.

        ``body`` is ``bytes`` or an async iterator of ``bytes`` chunks; large
        bodies stream (Azure staged blocks, Swift static large objects) and are
        never held whole. With ``if_none_match=True`` the put creates only:
        :class:`PreconditionFailed` if ``name`` exists. With ``if_match=etag``
        it replaces only that write: :class:`PreconditionFailed` if ``name``
        is missing or holds another write; the condition is checked when the
        new object would become visible (after a long upload, not before it).
        Giving both is a ``ValueError``. A put from an iterator is not retried
        (the iterator cannot be rewound); a put from ``bytes`` is, and a retry
        that finds its own earlier attempt stored succeeds. Raises
        ``ValueError`` for a bad name or metadata, before any I/O.
        """
        ...

    async def get(self, name: str, *, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, Reader]:
        """Open ``name`` for reading: its info and an iterator over its bytes.

        Raises :class:`NotFound` if missing. The iterator raises
        :class:`Corrupt` at its end if the bytes do not match the digest, and
        :class:`Unavailable` if the store fails mid-stream. Consume or
        ``aclose()`` the iterator to release the connection.

        With ``byte_range`` the iterator yields only bytes ``start`` through
        ``end`` (inclusive), clipped to the object, and only those are fetched
        from the store; the info still describes the whole object. The
        whole-object digest is not checked (the caller authenticates what it
        reads); a reader that yields other than the clipped length raises
        :class:`Corrupt`. :class:`RangeNotSatisfiable` if ``start`` is at or
        after the end; ``ValueError`` before any I/O for a malformed range.
        See "Byte ranges" above.
        """
        ...

    async def head(self, name: str) -> ObjectInfo:
        """Info of ``name`` without its body; :class:`NotFound` if missing."""
        ...

    async def copy(self, source: str, target: str, info: ObjectInfo, meta: Mapping[str, str]) -> ObjectInfo:
        """Make ``target`` hold the bytes ``source`` holds as ``info`` (the same size and digest),
        with user metadata ``meta``; return what ``target`` now holds.

        Inside the store where it can copy (Azure's Copy Blob, Swift's server-side copy, a
        hard link), so no byte of the object crosses the network; else read here (verified)
        and put. :class:`NotFound` if ``source`` is missing, :class:`PreconditionFailed` if it
        holds another write than ``info``'s (as far as the store can tell: see each driver).
        An existing ``target`` is replaced. ``ValueError`` for a bad name or metadata, before
        any I/O.
        """
        ...

    async def delete(self, name: str, *, if_match: str | None = None) -> None:
        """Remove ``name``. A missing object is not an error.

        With ``if_match=etag`` only that write is removed: :class:`PreconditionFailed`
        if ``name`` holds another one. A missing object still succeeds (the
        write named is gone either way), so a retried delete stays idempotent.
        """
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield every object whose name starts with ``prefix``, in byte order of the name."""
        ...

    async def close(self) -> None:
        """Release connections. The region is unusable afterwards."""
        ...


def check_name(name: str) -> bytes:
    """Validate an object name per the contract and return its UTF-8 bytes."""
    if not isinstance(name, str):
        raise ValueError(f"object name must be str, not {type(name).__name__}")
    raw = name.encode("utf-8", "strict")
    if not raw:
        raise ValueError("object name is empty")
    if len(raw) > MAX_NAME_BYTES:
        raise ValueError(f"object name is {len(raw)} bytes; the limit is {MAX_NAME_BYTES}")
    if _NOT_PORTABLE.search(name):
        raise ValueError("object name contains a control character or '\\'")
    if _DOT_SEGMENT.search(name):
        raise ValueError("object name contains a '.' or '..' path segment")
    return raw


def check_range(byte_range: ByteRange | None) -> None:
    """Validate a ``get``'s byte range per the contract (None: the whole object)."""
    if byte_range is None:
        return
    if not isinstance(byte_range, ByteRange):
        raise ValueError(f"byte_range must be a ByteRange or None, not {type(byte_range).__name__}")
    start, end = getattr(byte_range, "start", None), getattr(byte_range, "end", None)
    if type(start) is not int or type(end) is not int:
        raise ValueError(f"a byte range's start and end are ints, not {start!r} and {end!r}")
    if start < 0:
        raise ValueError(f"a byte range cannot start before byte 0 ({start})")
    if end < start:
        raise ValueError(f"a byte range cannot end ({end}) before it starts ({start}); the end is inclusive")


def check_conditions(if_none_match: bool, if_match: str | None) -> None:
    """Validate a put's preconditions: at most one, and an ``if_match`` that names an etag."""
    if if_match is not None:
        if if_none_match:
            raise ValueError("give if_match or if_none_match, not both")
        if not isinstance(if_match, str) or not if_match:
            raise ValueError("if_match must be a non-empty etag from head, get, list or put")


def check_meta(meta: Mapping[str, str]) -> dict[str, str]:
    """Validate user metadata per the contract and return a plain copy."""
    if len(meta) > MAX_META_KEYS:
        raise ValueError(f"{len(meta)} metadata keys; the limit is {MAX_META_KEYS}")
    total = 0
    for key, value in meta.items():
        if not isinstance(key, str) or not _META_KEY.fullmatch(key):
            raise ValueError(f"metadata key {key!r} must match {_META_KEY.pattern}")
        if key.startswith("x_"):
            raise ValueError(f"metadata key {key!r} is reserved for drivers")
        if not isinstance(value, str):
            raise ValueError(f"metadata value for {key!r} must be str")
        total += len(key) + len(value.encode("utf-8"))
    if total > MAX_META_BYTES:
        raise ValueError(f"metadata is {total} bytes; the limit is {MAX_META_BYTES}")
    return dict(meta)
