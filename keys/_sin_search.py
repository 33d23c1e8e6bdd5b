"""The SIN scanner's substring search: the plain one and a faster equal.

``keys.sin`` maps each block of input to a class string (``CLASSES``: ASCII
digit -> ``d``, ASCII letter -> ``a``, anything else -> ``.``) and looks in
it for the two shapes a SIN candidate takes, ``BARE`` and ``GROUPED``. A
spotter returns the offset after the leading dot of every ``BARE``
occurrence at or after ``start``, then of every ``GROUPED`` one, or None
once there are more than ``limit``.

* ``spots_py``: ``bytearray.find``, the plain search.
* ``libc_spots``: the same search through libc's ``strstr`` via ``ctypes``
  (SIMD), or None where libc's is not usable or disagrees with ``spots_py``
  on a probe. It relies on two facts of class strings: no byte maps to NUL,
  and a bytearray keeps a NUL after its last byte, so a class string is a C
  string. ``REPLICATOR_SIN_PURE_PYTHON=1`` turns it off.

The two must give equal answers on every input
(``tests/unit/keys/test_sin_search.py``); ``bench/sin.py`` measures both.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

CLASSES = bytes(0x64 if 48 <= b <= 57 else 0x61 if 65 <= b <= 90 or 97 <= b <= 122 else 0x2E for b in range(256))
BARE = b".ddddddddd."
GROUPED = b".ddd.ddd.ddd."
NEEDLES = (BARE, GROUPED)
# CPython's bytes.find switches to its two-way search on haystacks of 30000
# bytes and more, which is slower on class strings with many dots (binary
# data): search in windows below that.
WINDOW = 28_000

Spotter = Callable[[bytearray, int, int], "list[int] | None"]


def spots_py(classes: bytearray, start: int, limit: int) -> list[int] | None:
    out: list[int] = []
    n = len(classes)
    find = classes.find
    for needle in NEEDLES:
        lo = start
        while lo < n:
            hi = min(n, lo + WINDOW)
            i = find(needle, lo, hi)
            while i >= 0:
                out.append(i + 1)
                if len(out) > limit:
                    return None
                i = find(needle, i + 1, hi)
            # Next window: from the first start whose occurrence did not fit in this one.
            lo = max(lo + 1, hi - len(needle) + 1) if hi < n else n
    return out


def _libc_spotter() -> Spotter | None:
    if os.environ.get("REPLICATOR_SIN_PURE_PYTHON"):
        return None
    try:
        strstr = ctypes.CDLL(None).strstr
    except (OSError, AttributeError, TypeError):
        return None
    strstr.restype = ctypes.c_void_p
    strstr.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    char_at = ctypes.c_char.from_buffer
    addressof = ctypes.addressof

    def spots(classes: bytearray, start: int, limit: int) -> list[int] | None:
        # ``classes`` holds no NUL and is NUL-terminated, and is neither resized
        # nor freed while ``pin`` (an export of its buffer) lives.
        if not classes:
            return []  # ctypes cannot pin an empty buffer
        pin = char_at(classes)
        base = addressof(pin) - 1  # so that p - base is the offset after the dot
        out: list[int] = []
        for needle in NEEDLES:
            p = strstr(base + 1 + start, needle)
            while p:
                out.append(p - base)
                if len(out) > limit:
                    return None
                p = strstr(p + 1, needle)
        del pin
        return out

    # Refuse a strstr that does not agree with bytearray.find on a sample.
    probe = bytearray(b"x 130 692 544 y 123456789.ddd 1-2-3 (987 654 321)").translate(CLASSES)
    for start in range(len(probe) + 1):
        if spots(probe, start, 99) != spots_py(probe, start, 99):
            return None
    return spots


libc_spots: Spotter | None = _libc_spotter()
