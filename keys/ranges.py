"""Range reads: decrypt a byte range of an object from only the segments holding it.

The layout is in ``keys/stream.py``. With S the ciphertext segment size, h
the bytes before segment 0 (our header and Tink's 40-byte header, so
``_header.size(dek_id)``), 16-byte tags and 40 bytes of Tink header in
segment 0:

* plaintext per segment: segment 0 holds ``S - 56`` bytes, every other
  ``S - 16``; the last holds what remains (0 only for an empty object);
* segment i starts at plaintext offset ``0`` (i = 0) or
  ``(S - 56) + (i - 1)(S - 16)``, and at stored offset ``h`` (i = 0) or
  ``h + (S - 40) + (i - 1)S``; it ends where the next starts, or at the end
  of the object for the last;
* plaintext byte x is in segment 0 if x < S - 56, else in segment
  ``1 + (x - (S - 56)) // (S - 16)``.

``plan_range`` turns (stored size, DEK id, plaintext range) into the two
byte ranges to fetch, the header and the run of segments, and where the
requested bytes sit in their plaintext. ``decrypt_range`` and
``decrypt_range_stream`` take what was fetched: the header is parsed and
its key commitment checked exactly as for a full read (``Opener``), then the
segments are opened from the plan's first index on (nonce = prefix ‖ index
‖ last flag), each released only after its tag verifies, and only the
requested bytes come out. The run's last segment is opened with the last
flag set iff it is the stream's final segment; a range ending earlier opens
its last segment as an inner one, so a final segment presented as an inner
one (or the reverse) fails its tag.

Every way the fetched bytes can be wrong (a header of another object, key,
AD or DEK id, a flipped bit, a segment from another index, bytes too few or
too many) raises ``DecryptionFailed``, as a full read does; so does a
stored size no ciphertext can have. As with ``decrypt_stream``, a streaming
caller may have received verified bytes of earlier segments when a later one
fails and must then abort the whole response.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

from keys import _header
from keys._segments import (
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    SEGMENT_SIZE,
    TAG_LEN,
    DecryptionFailed,
    Opener,
    _Segments,
    own,
)
from keys.stream import KeyLookup, ciphertext_size

__all__ = [
    "RangeNotSatisfiable",
    "RangePlan",
    "decrypt_range",
    "decrypt_range_stream",
    "plaintext_size",
    "plan_range",
]

_TINK = _header.TINK_HEADER_LEN


class RangeNotSatisfiable(Exception):
    """The range starts at or past the end of the plaintext (HTTP 416;
    ``Content-Range: bytes */<plaintext_size>``)."""

    def __init__(self, plaintext_size: int) -> None:
        super().__init__(f"range not satisfiable: the plaintext has {plaintext_size} bytes")
        self.plaintext_size = plaintext_size


@dataclass(frozen=True, slots=True)
class RangePlan:
    """What to fetch for a plaintext range and where its bytes sit.

    Byte ranges are half-open ``(offset, stop)`` into the stored object;
    ``start`` and ``end`` are the (clipped) plaintext range, both inclusive.
    """

    dek_id: str
    segment_size: int
    plaintext_size: int
    start: int
    end: int
    header_range: tuple[int, int]  # our header and Tink's: (0, h)
    segments_range: tuple[int, int]  # ciphertext of segments first..last
    first_segment: int
    last_segment: int
    last_is_final: bool  # the last fetched segment is the stream's final one
    skip: int  # plaintext bytes of the first segment before ``start``

    @property
    def length(self) -> int:
        """Plaintext bytes the range yields."""
        return self.end - self.start + 1


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment_size must be in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")


def plaintext_size(stored_size: int, dek_id: str, segment_size: int = SEGMENT_SIZE) -> int:
    """The plaintext length behind a stored ciphertext of ``stored_size``
    bytes (the inverse of ``ciphertext_size``). ``DecryptionFailed`` when no
    ciphertext has that length (a truncated or padded object)."""
    _check_segment_size(segment_size)
    body = stored_size - _header.size(dek_id)
    if body < TAG_LEN:
        raise DecryptionFailed()
    first = segment_size - _TINK
    segments = 1 if body <= first else 1 + -(-(body - first) // segment_size)
    size = body - segments * TAG_LEN
    if size < 0 or ciphertext_size(size, dek_id, segment_size) != stored_size:
        raise DecryptionFailed()
    return size


def plan_range(
    stored_size: int, dek_id: str, start: int, end: int | None = None, *, segment_size: int = SEGMENT_SIZE
) -> RangePlan:
    """The fetch plan for plaintext bytes ``start..end`` (inclusive; ``end``
    None or past the end means to the last byte) of an object stored in
    ``stored_size`` bytes under ``dek_id``, written with ``segment_size``
    (every object this service writes uses ``SEGMENT_SIZE``).

    ValueError for a malformed range (start < 0, end < start) or DEK id;
    ``RangeNotSatisfiable`` when ``start`` is not before the end of the
    plaintext; ``DecryptionFailed`` when no ciphertext is ``stored_size``
    bytes long."""
    if start < 0 or (end is not None and end < start):
        raise ValueError("a range needs 0 <= start <= end")
    size = plaintext_size(stored_size, dek_id, segment_size)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if end is None else min(end, size - 1)
    head = _header.size(dek_id)
    first_pt = segment_size - _TINK - TAG_LEN  # plaintext in segment 0
    per_pt = segment_size - TAG_LEN  # plaintext in every later segment

    def index(x: int) -> int:
        return 0 if x < first_pt else 1 + (x - first_pt) // per_pt

    def pt_offset(i: int) -> int:
        return 0 if i == 0 else first_pt + (i - 1) * per_pt

    def ct_offset(i: int) -> int:
        return head if i == 0 else head + segment_size - _TINK + (i - 1) * segment_size

    first, last = index(start), index(end)
    final = index(size - 1)
    return RangePlan(
        dek_id=dek_id,
        segment_size=segment_size,
        plaintext_size=size,
        start=start,
        end=end,
        header_range=(0, head),
        segments_range=(ct_offset(first), stored_size if last == final else ct_offset(last + 1)),
        first_segment=first,
        last_segment=last,
        last_is_final=last == final,
        skip=start - pt_offset(first),
    )


def _opener(plan: RangePlan, header: bytes, associated_data: bytes) -> Opener:
    """An Opener holding the parsed header, which must be exactly the
    planned header of the planned DEK and segment size."""
    opener = Opener(associated_data)
    if len(header) != plan.header_range[1] - plan.header_range[0]:
        raise DecryptionFailed()
    parsed = opener.feed_header(header)
    if parsed is None or parsed.dek_id != plan.dek_id or parsed.segment_size != plan.segment_size:
        raise DecryptionFailed()
    return opener


class _Run:
    """Feeds the planned segments' ciphertext to ``_Segments`` started at the
    first planned index, and cuts the requested bytes from their plaintext."""

    __slots__ = ("_count", "_final", "_left_in", "_left_out", "_segments", "_skip")

    def __init__(self, plan: RangePlan, opener: Opener) -> None:
        assert opener._segments is not None  # start() made them
        self._segments: _Segments = opener._segments
        self._left_in = plan.segments_range[1] - plan.segments_range[0]
        self._count = plan.last_segment - plan.first_segment + 1
        self._final = plan.last_is_final
        self._skip = plan.skip
        self._left_out = plan.length

    def _cut(self, plaintext: bytes) -> bytes:
        skip, left = self._skip, self._left_out
        if skip or len(plaintext) > left:
            plaintext = plaintext[skip : skip + left]
            self._skip = 0
        self._left_out -= len(plaintext)
        self._count -= 1
        return plaintext

    def feed(self, chunk: bytes) -> list[bytes]:
        if len(chunk) > self._left_in:
            raise DecryptionFailed()  # more than the planned segments
        self._left_in -= len(chunk)
        segments = self._segments
        segments.push(own(chunk))
        return [self._cut(piece) for piece in iter(segments.pop_opened, None)]

    def finish(self) -> bytes:
        if self._left_in or self._count != 1:
            raise DecryptionFailed()  # fewer than the planned segments
        segments = self._segments
        out = self._cut(segments.last_opened() if self._final else segments.last_opened_inner())
        if self._left_out:
            raise DecryptionFailed()  # unreachable when the plan fits the bytes fed
        return out


def decrypt_range(
    plan: RangePlan,
    header: bytes,
    segments: bytes,
    key: bytes | Callable[[str], bytes],
    associated_data: bytes,
) -> bytes:
    """Plaintext bytes ``plan.start..plan.end`` from the fetched header
    (bytes ``plan.header_range``) and segments (bytes
    ``plan.segments_range``). ``key`` is the DEK or a lookup by the DEK id
    in the header, as for ``decrypt_bytes``."""
    opener = _opener(plan, header, associated_data)
    assert opener.header is not None
    opener.start(key(opener.header.dek_id) if callable(key) else key, plan.first_segment)
    run = _Run(plan, opener)
    return b"".join([*run.feed(segments), run.finish()])


async def decrypt_range_stream(
    plan: RangePlan,
    header: bytes,
    segments: AsyncIterable[bytes],
    key: bytes | KeyLookup,
    associated_data: bytes,
) -> AsyncIterator[bytes]:
    """``decrypt_range`` with the segments as an async stream of chunks (any
    sizes) and a sync or async key lookup; yields plaintext, each segment's
    only after its tag verifies. On ``DecryptionFailed`` the caller must
    discard what it already received."""
    opener = _opener(plan, header, associated_data)
    assert opener.header is not None
    if callable(key):
        found = key(opener.header.dek_id)
        opener.start(await found if inspect.isawaitable(found) else found, plan.first_segment)
    else:
        opener.start(key, plan.first_segment)
    run = _Run(plan, opener)
    async for chunk in segments:
        for piece in run.feed(chunk):
            yield piece
            del piece
        del chunk
    yield run.finish()
