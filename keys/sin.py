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
than UTF-8 or ASCII, are not looked at. The policy decides whether a class
may hold SINs (``sin_allowed``); this module only finds them.

``SinScanner`` streams: ``feed`` each chunk, then ``finish()`` at the end of
the stream. It keeps the last 15 bytes between chunks, so a SIN split across
chunks (any split, even one byte per chunk) is found, and the answer never
depends on where the chunks break: a candidate is judged only once the bytes
that decide it have arrived (or the stream has ended). Memory is O(1) beyond
the chunk being scanned.
"""

from __future__ import annotations

import re

# One zero-width match per candidate start, so overlapping candidates are all
# seen. The left boundary is a lookbehind (it may look before ``pos``); the
# right boundary is checked in Python, where the end of a chunk is known.
_CANDIDATE = re.compile(rb"(?<![A-Za-z0-9])(?=([1-79][0-9]{2})([ -]?)([0-9]{3})\2([0-9]{3}))")
_MAX_LEN = 11  # "ddd-ddd-ddd"
_CONTEXT = 2  # bytes needed on each side to judge a candidate


def luhn_valid(digits: bytes | str) -> bool:
    """Luhn check of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits if isinstance(digits, bytes) else digits.encode("ascii"))):
        d = ch - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_alnum(b: int) -> bool:
    return 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122


def _is_digit(b: int) -> bool:
    return 48 <= b <= 57


class SinScanner:
    """Streaming SIN detector: ``feed(chunk) -> bool``, ``finish() -> bool``,
    ``found``. ``feed`` returns True as soon as a SIN is certain; a SIN at the
    very end of the stream is known only after ``finish()``."""

    __slots__ = ("_buf", "_base", "_cursor", "_found", "_finished")

    def __init__(self) -> None:
        self._buf = b""  # stream bytes from absolute offset _base
        self._base = 0
        self._cursor = 0  # first absolute start position not yet judged
        self._found = False
        self._finished = False

    @property
    def found(self) -> bool:
        return self._found

    def feed(self, chunk: bytes) -> bool:
        if self._finished:
            raise ValueError("scanner already finished")
        if self._found or not chunk:
            return self._found
        buf = self._buf + bytes(chunk)
        self._found = self._scan(buf, final=False)
        end = self._base + len(buf)
        # Starts before end - 13 are judged; keep 2 bytes before the cursor
        # for the left boundary.
        self._cursor = max(self._cursor, end - _MAX_LEN - _CONTEXT)
        keep_from = max(self._base, self._cursor - _CONTEXT)
        self._buf = buf[keep_from - self._base :]
        self._base = keep_from
        return self._found

    def finish(self) -> bool:
        """Judge what is left at the end of the stream; returns ``found``."""
        if not self._finished and not self._found:
            self._found = self._scan(self._buf, final=True)
        self._finished = True
        self._buf = b""
        return self._found

    def _scan(self, buf: bytes, final: bool) -> bool:
        n = len(buf)
        for m in _CANDIDATE.finditer(buf, self._cursor - self._base):
            start, end, sep = m.start(), m.end(4), m.group(2)
            if not final and end + _CONTEXT > n:
                break  # right boundary not here yet: judged on a later call
            if _is_sin(buf, start, end, sep, m):
                return True
        return False


def _is_sin(buf: bytes, start: int, end: int, sep: bytes, m: re.Match[bytes]) -> bool:
    if end < len(buf) and _is_alnum(buf[end]):
        return False
    if sep:
        # Part of a longer grouped number, e.g. "1 130 692 544" or "130-692-544-1".
        if start >= 2 and buf[start - 1 : start] == sep and _is_digit(buf[start - 2]):
            return False
        if end + 2 <= len(buf) and buf[end : end + 1] == sep and _is_digit(buf[end + 1]):
            return False
    return luhn_valid(m.group(1) + m.group(3) + m.group(4))


def contains_sin(data: bytes | str) -> bool:
    """Whether ``data`` (bytes, or text encoded as UTF-8) holds a valid SIN."""
    scanner = SinScanner()
    scanner.feed(data.encode("utf-8") if isinstance(data, str) else data)
    return scanner.finish()
