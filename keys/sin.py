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
the chunk being scanned (plus two copies of one block of at most 256 KiB).

How it is fast (every written plaintext goes through here, so it must keep
up with the write path): a regex that tries a lookaround at every byte
position is far too slow. Instead each block of input is mapped, with one
``bytearray.translate``, to a class string (``keys._sin_search``). Every
judgeable SIN candidate then shows as ``.ddddddddd.`` (bare) or
``.ddd.ddd.ddd.`` (grouped) in it, the dots being the non-alphanumeric bytes
around it, so two substring searches find every spot that can hold one;
only those spots get the exact check (the original regex, anchored there,
then ``_is_sin``). Candidates whose left neighbour is not in the block (the
very start of the stream) and tiny inputs go through the exact regex
directly. ``tests/unit/keys/test_sin.py`` checks both search back ends
against the plain regex scanner on random inputs and chunkings;
``bench/sin.py`` measures them.
"""

from __future__ import annotations

import re

from keys._sin_search import CLASSES, Spotter, libc_spots, spots_py

# One zero-width match per candidate start, so overlapping candidates are all
# seen. The left boundary is a lookbehind (it may look before ``pos``); the
# right boundary is checked in Python, where the end of a chunk is known.
_CANDIDATE = re.compile(rb"(?<![A-Za-z0-9])(?=([1-79][0-9]{2})([ -]?)([0-9]{3})\2([0-9]{3}))")
# The same candidate, anchored where the class search says one may start
# (that search has already checked the byte before it).
_CANDIDATE_AT = re.compile(rb"([1-79][0-9]{2})([ -]?)([0-9]{3})\2([0-9]{3})")
_MAX_LEN = 11  # "ddd-ddd-ddd"
_CONTEXT = 2  # bytes needed on each side to judge a candidate

_BLOCK = 1 << 18  # candidate starts per translated block: a few µs of overhead per block
_SMALL = 256  # inputs up to this size skip the prefilter (its setup costs more than it saves)
_SPOTS = 16  # spots per block (plus one per 256 bytes) beyond which the regex takes the block


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


# The search in use (tests and bench/sin.py swap it for the other).
_spots: Spotter = libc_spots or spots_py


# ----- the scanner -------------------------------------------------------------


class SinScanner:
    """Streaming SIN detector: ``feed(chunk) -> bool``, ``finish() -> bool``,
    ``found``. ``feed`` returns True as soon as a SIN is certain; a SIN at the
    very end of the stream is known only after ``finish()``."""

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

    def feed(self, chunk: bytes) -> bool:
        if self._finished:
            raise ValueError("scanner already finished")
        if self._found or not chunk:
            return self._found
        view = memoryview(chunk)
        if view.format != "B" or not view.c_contiguous:
            view = memoryview(view.tobytes())
        tail = self._buf
        n = len(tail) + len(view)  # the stream from _base: tail, then the chunk
        lo = self._cursor - self._base
        if n <= _SMALL:
            self._found = _scan_exact(tail + view.tobytes(), lo, final=False)
        else:
            self._found = _scan_blocks(tail, view, lo, n)
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

    def finish(self) -> bool:
        """Judge what is left at the end of the stream; returns ``found``."""
        if not self._finished and not self._found:
            self._found = _scan_exact(self._buf, self._cursor - self._base, final=True)
        self._finished = True
        self._buf = b""
        return self._found


def _scan_exact(buf: bytes | bytearray, lo: int, final: bool, hi: int | None = None, n: int | None = None) -> bool:
    """Any SIN among candidates starting in [lo, hi) of ``buf`` (default: to
    its end), by the regex alone. The stream seen so far ends at ``n`` (default:
    the end of ``buf``); without ``final``, a candidate whose right context is
    not all there yet is left for a later call."""
    if n is None:
        n = len(buf)
    for m in _CANDIDATE.finditer(buf, lo):
        start, end, sep = m.start(), m.end(4), m.group(2)
        if hi is not None and start >= hi:
            break
        if not final and end + _CONTEXT > n:
            break  # right boundary not here yet: judged on a later call
        if _is_sin(buf, start, end, sep, m):
            return True
    return False


def _scan_blocks(tail: bytes, view: memoryview, lo: int, n: int) -> bool:
    """``_scan_exact(tail + view, lo, final=False)``, block by block, without
    copying the whole chunk: each block of candidate starts [a, b) is copied
    with 2 bytes of context before it and 13 after (clipped to the stream)."""
    t = len(tail)
    a = lo
    while a <= n - 9:  # a candidate has at least 9 bytes
        b = min(a + _BLOCK, n)
        src0, src1 = max(0, a - _CONTEXT), min(n, b + _MAX_LEN + _CONTEXT)
        if src0 >= t:
            block = bytearray(view[src0 - t : src1 - t])
        else:
            block = bytearray(tail[src0:])
            block += view[: src1 - t]
        if _block_has_sin(block, a - src0, b - src0, n - src0):
            return True
        a = b
    return False


def _block_has_sin(block: bytearray, lo: int, hi: int, n: int) -> bool:
    """Any SIN among candidates starting in [lo, hi) of ``block``, where the
    stream seen so far ends at ``n`` (``block`` holds the context of every
    such candidate up to there; ``lo`` is 0 only at the start of the stream)."""
    if lo == 0:  # the stream's first byte: no left neighbour to find in the classes
        m = _CANDIDATE.match(block, 0)
        if m is not None and m.end(4) + _CONTEXT <= n and _is_sin(block, 0, m.end(4), m.group(2), m):
            return True
    classes = block.translate(CLASSES)
    # Typical data has no spot at all; data dense with 3-digit groups could have
    # one every 4 bytes, and the regex is then the cheaper way through the block.
    limit = _SPOTS + ((hi - lo) >> 8)
    spots = _spots(classes, max(lo - 1, 0), limit)
    if spots is None:
        return _scan_exact(block, lo, False, hi, n)
    for start in spots:
        if start >= hi:
            continue
        m = _CANDIDATE_AT.match(block, start)
        if m is None:  # a grouped shape with other separators, or a leading 0/8
            continue
        end = m.end(4)
        if end + _CONTEXT > n:
            continue  # right boundary not here yet: judged on a later call
        if _is_sin(block, start, end, m.group(2), m):
            return True
    return False


def _is_sin(buf: bytes | bytearray, start: int, end: int, sep: bytes, m: re.Match[bytes]) -> bool:
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
