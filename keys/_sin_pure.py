"""The SIN scanner's judge in plain Python: the reference the compiled one must equal.

``scan(tail, chunk, lo, final)`` has the contract of ``keys._sin_scan.scan``
(see ``keys.sin`` for the rules and the streaming around it): whether the
stream bytes ``tail + chunk`` hold a SIN among the candidates starting at
``lo`` or later, a candidate whose right context has not arrived being left
for a later call unless ``final``. ``keys.sin`` uses it where the compiled
module is not built, or with ``REPLICATOR_SIN_PURE_PYTHON=1``; the
differential tests in ``tests/unit/keys/test_sin.py`` hold the two equal.

How it is fast for plain Python (about 600-1,000 MB/s on 2 CPUs, and it
holds the GIL): a regex that tries a lookaround at every byte position is
far too slow. Instead each block of input is mapped, with one
``bytearray.translate``, to a class string (``keys._sin_search``). Every
judgeable SIN candidate then shows as ``.ddddddddd.`` (bare) or
``.ddd.ddd.ddd.`` (grouped) in it, the dots being the non-alphanumeric bytes
around it, so two substring searches find every spot that can hold one;
only those spots get the exact check (the original regex, anchored there,
then ``_is_sin``). Candidates whose left neighbour is not in the block (the
very start of the stream) and tiny inputs go through the exact regex
directly. Memory: two copies of one block of at most 256 KiB.
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


def scan(tail: bytes, chunk: bytes | memoryview, lo: int, final: bool) -> bool:
    """Any SIN among the candidates starting at ``lo`` or later in ``tail + chunk``."""
    n = len(tail) + len(chunk)
    if final or n <= _SMALL:
        return _scan_exact(tail + bytes(chunk), lo, final)
    return _scan_blocks(tail, memoryview(chunk), lo, n)


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
