"""Canadian Social Insurance Number detector, whole-text and streaming.

A SIN, for this detector, is nine ASCII digits that

* pass the Luhn check and do not start with 0 or 8 (0 is never issued, 8 is
  for business numbers), so a 9-digit number that fails either is **not**
  refused;
* are written bare (``130692544``) or in groups of three separated by one
  space or one dash, the same separator both times (``130 692 544``,
  ``130-692-544``; ``130-692 544`` is not a SIN);
* stand alone: the byte before and the byte after are not ASCII letters or
  digits (so ``x130692544`` or a SIN inside a 12-digit run is not one, while
  ``SIN:130692544`` or ``(130 692 544)`` is). Letters count as well as
  digits because session and visit data are full of random tokens, and a
  hex or base64 token holds a Luhn-valid 9-digit run far too often;
* are not a piece of a longer grouped number: a grouped SIN preceded by
  ``<digit><sep>`` or followed by ``<sep><digit>`` with its own separator
  (``1 130 692 544``, ``130-692-544-123``) is a longer number, as a bare SIN
  inside a longer digit run is.

Only ASCII digits count: other Unicode digits, and text in encodings other
than UTF-8 or ASCII, are not looked at here (``keys.sin_containers`` transcodes
UTF-16 and opens gzip, zip and PDF before this scan). The policy decides whether a class
may hold SINs (``sin_allowed``); this module only finds them.

``SinScanner`` streams: ``feed`` each chunk, then ``finish()`` at the end of
the stream. It keeps the last 15 bytes between chunks, so a SIN split across
chunks (any split, even one byte per chunk) is found, and the answer never
depends on where the chunks break: a candidate is judged only once the bytes
that decide it have arrived (or the stream has ended). Memory is O(1) beyond
the chunk being scanned.

The judging is done by one of two equal engines with one contract,
``scan(tail, chunk, lo, final) -> bool``: ``keys._sin_scan``, compiled from
``keys/_sin_scan.c`` (SSE2, several GB/s, the GIL released on large chunks),
and ``keys._sin_pure``, plain Python (the reference, and the fallback where
the extension is not built or ``REPLICATOR_SIN_PURE_PYTHON=1``). A chunk
of ``OFF_LOOP_BYTES`` or more is worth a thread hop: ``afeed`` scans it in a
worker thread, so the event loop keeps serving while it runs.
``tests/unit/keys/test_sin.py`` holds both engines to a brute-force
reference and to each other; ``bench/sin.py`` measures them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from types import ModuleType

from keys import _sin_pure
from keys._sin_pure import luhn_valid

__all__ = ["OFF_LOOP_BYTES", "SinScanner", "contains_sin", "luhn_valid"]

_MAX_LEN = 11  # "ddd-ddd-ddd"
_CONTEXT = 2  # bytes needed on each side to judge a candidate

# A thread hop (asyncio.to_thread) costs about 60 µs on 2 CPUs, about what the
# compiled engine takes over 256 KiB: smaller chunks are scanned in place.
OFF_LOOP_BYTES = 1 << 18

Engine = Callable[[bytes, "bytes | memoryview", int, bool], bool]


def _compiled() -> ModuleType | None:
    try:
        from keys import _sin_scan  # built from keys/_sin_scan.c by the install
    except ImportError:
        return None
    return _sin_scan


_sin_scan = _compiled()
# The engine in use (tests and bench/sin.py swap it for the other).
_engine: Engine = (
    _sin_scan.scan if _sin_scan is not None and not os.environ.get("REPLICATOR_SIN_PURE_PYTHON") else _sin_pure.scan
)


class SinScanner:
    """Streaming SIN detector: ``feed(chunk) -> bool``, ``finish() -> bool``,
    ``found``. ``feed`` returns True as soon as a SIN is certain; a SIN at the
    very end of the stream is known only after ``finish()``. One scanner is
    fed by one caller at a time (``afeed`` awaits its scan before returning)."""

    __slots__ = ("_base", "_buf", "_cursor", "_finished", "_found")

    def __init__(self) -> None:
        self._buf = b""  # the last stream bytes (at most 15), from absolute offset _base
        self._base = 0
        self._cursor = 0  # first absolute start position not yet judged
        self._found = False
        self._finished = False

    @property
    def found(self) -> bool:
        return self._found

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        if self._finished:
            raise ValueError("scanner already finished")
        if self._found or not chunk:
            return self._found
        view = memoryview(chunk)
        if view.format != "B" or not view.c_contiguous:
            view = memoryview(view.tobytes())  # its raw bytes, as bytes(chunk) gives
        tail = self._buf
        n = len(tail) + len(view)  # the stream from _base: tail, then the chunk
        self._found = _engine(tail, view, self._cursor - self._base, False)
        end = self._base + n
        # Starts before end - 13 are judged; keep 2 bytes before the cursor
        # for the left boundary.
        self._cursor = max(self._cursor, end - _MAX_LEN - _CONTEXT)
        keep_from = max(self._base, self._cursor - _CONTEXT)
        cut = keep_from - self._base
        if cut >= len(tail):
            self._buf = view[cut - len(tail) :].tobytes()
        else:
            self._buf = tail[cut:] + view.tobytes()
        self._base = keep_from
        return self._found

    async def afeed(self, chunk: bytes | bytearray | memoryview) -> bool:
        """``feed``, in a worker thread when the chunk is large (``OFF_LOOP_BYTES``),
        so the event loop keeps serving while it is scanned."""
        if memoryview(chunk).nbytes >= OFF_LOOP_BYTES:
            return await asyncio.to_thread(self.feed, chunk)
        return self.feed(chunk)

    def finish(self) -> bool:
        """Judge what is left at the end of the stream; returns ``found``."""
        if not self._finished and not self._found:
            self._found = _engine(self._buf, b"", self._cursor - self._base, True)
        self._finished = True
        self._buf = b""
        return self._found


def contains_sin(data: bytes | str) -> bool:
    """Whether ``data`` (bytes, or text encoded as UTF-8) holds a valid SIN."""
    scanner = SinScanner()
    scanner.feed(data.encode("utf-8") if isinstance(data, str) else data)
    return scanner.finish()
