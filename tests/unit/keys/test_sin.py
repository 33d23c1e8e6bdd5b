"""keys.sin: examples, boundaries, and streaming that ignores chunk boundaries."""

from __future__ import annotations

import array
import contextlib
import itertools
import os
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keys._sin_search as search_mod
import keys.sin as sin_mod
from keys.sin import SinScanner, contains_sin, luhn_valid

VALID = "130692544"  # Luhn-valid, first digit 1


def _with_check_digit(first8: str) -> str:
    return next(first8 + d for d in "0123456789" if luhn_valid(first8 + d))


def _chunked(data: bytes, cuts: list[int]) -> bool:
    scanner = SinScanner()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        scanner.feed(data[a:b])
    return scanner.finish()


@pytest.mark.parametrize(
    "text",
    [
        "130692544",
        "130 692 544",
        "130-692-544",
        "SIN: 130 692 544.",
        "SIN:130692544",
        "(130-692-544)",
        "my sin is 130692544\n",
        "x_130692544_y",  # underscore is not a letter or digit
        "café 130 692 544 été",
        "193456787",  # another valid SIN
        "130 692 544, 5 items",
    ],
)
def test_finds_valid_sins(text):
    assert contains_sin(text)
    assert contains_sin(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "130692545",  # Luhn fails
        "130 692 545",
        "046454286",  # Luhn-valid but starts with 0 (CRA's sample number)
        "046 454 286",
        "830692541",  # starts with 8 (business numbers)
        "130 692-544",  # mixed separators
        "130  692  544",  # two spaces
        "130.692.544",  # not a SIN separator
        "130_692_544",
        "1306925440",  # ten-digit run
        "999130692544",  # inside a 12-digit run
        "130692544123",
        "x130692544",  # glued to a token
        "130692544abc",
        "session=a130692544f",
        "1 130 692 544",  # a longer grouped number
        "130-692-544-123",
        "130 692 544 5 items",  # <sep><digit> continues the number
        "13069254",  # eight digits
        "",
    ],
)
def test_ignores_non_sins(text):
    assert not contains_sin(text)


def test_luhn():
    assert luhn_valid("130692544") and luhn_valid("046454286") and not luhn_valid("130692545")


@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_split_across_chunks_at_every_point(sep):
    sin = sep.join([VALID[:3], VALID[3:6], VALID[6:]])
    data = f"prefix {sin} suffix".encode()
    for cut in range(len(data) + 1):
        assert _chunked(data, [cut]), cut
    assert _chunked(data, list(range(len(data))))  # one byte per chunk


def test_sin_at_the_very_end_needs_finish():
    scanner = SinScanner()
    assert scanner.feed(b"sin 130692544") is False  # a 10th digit could still follow
    assert scanner.finish() is True and scanner.found


def test_longer_run_across_chunks_is_not_a_sin():
    scanner = SinScanner()
    scanner.feed(b"130692544")
    scanner.feed(b"1")
    assert scanner.finish() is False


def test_feed_reports_early_and_memory_stays_small():
    scanner = SinScanner()
    assert scanner.feed(b"130 692 544 and more") is True
    other = SinScanner()
    for _ in range(1000):
        other.feed(b"lorem ipsum 1234 5678 " * 50)
    assert len(other._buf) <= 15
    assert other.finish() is False


def test_feed_after_finish_is_an_error():
    scanner = SinScanner()
    scanner.finish()
    with pytest.raises(ValueError):
        scanner.feed(b"x")


# ----- properties -------------------------------------------------------------

valid_sins = st.builds(
    lambda first, rest: _with_check_digit(first + rest),
    st.sampled_from("1234567 9".replace(" ", "")),
    st.text("0123456789", min_size=7, max_size=7),
)
invalid_luhn = st.builds(
    lambda first, rest, bump: (lambda s: s[:8] + str((int(s[8]) + bump) % 10))(_with_check_digit(first + rest)),
    st.sampled_from("1234567 9".replace(" ", "")),
    st.text("0123456789", min_size=7, max_size=7),
    st.integers(1, 9),
)
bad_first_digit = st.builds(
    lambda first, rest: _with_check_digit(first + rest),
    st.sampled_from("08"),
    st.text("0123456789", min_size=7, max_size=7),
)
separators = st.sampled_from(["", " ", "-"])
# Filler without digits, so the filler itself can never hold a SIN.
filler = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="0123456789"), max_size=60)
# Characters that end a token: not letters or digits, not a SIN separator.
delims = st.sampled_from(["\n", ".", ",", ":", "(", ")", "|", "\t", "/"])
cuts = st.lists(st.integers(0, 10_000), max_size=8)


def _format(sin: str, sep: str) -> str:
    return sep.join([sin[:3], sin[3:6], sin[6:]])


@settings(max_examples=300)
@given(valid_sins, separators, filler, filler, delims, delims, cuts)
def test_any_valid_sin_in_any_text_and_chunking_is_found(sin, sep, before, after, d1, d2, cuts):
    data = (before + d1 + _format(sin, sep) + d2 + after).encode()
    assert contains_sin(data)
    assert _chunked(data, cuts)


@settings(max_examples=300)
@given(st.one_of(invalid_luhn, bad_first_digit), separators, filler, filler, delims, delims, cuts)
def test_luhn_invalid_or_bad_first_digit_is_never_found(number, sep, before, after, d1, d2, cuts):
    data = (before + d1 + _format(number, sep) + d2 + after).encode()
    assert not contains_sin(data)
    assert not _chunked(data, cuts)


@settings(max_examples=500)
@given(st.text(st.sampled_from("0123456789 -ab\n"), max_size=80), cuts)
def test_chunking_never_changes_the_answer(text, cuts):
    data = text.encode()
    assert _chunked(data, cuts) == contains_sin(data)


@settings(max_examples=300)
@given(st.binary(max_size=200), cuts)
def test_chunking_never_changes_the_answer_on_bytes(data, cuts):
    assert _chunked(data, cuts) == contains_sin(data)


# ----- the fast scanner against slow references ---------------------------------
#
# keys.sin finds candidate spots with a class-string search (libc strstr or
# bytearray.find) over blocks of the stream, then judges each spot exactly.
# These tests hold it to two slow scanners: the regex scanner it replaced
# (streaming, kept here verbatim) and a brute force written from the module
# docstring's rules alone. The block machinery is shrunk (tiny blocks, no
# small-input shortcut, tiny search windows, fallback to the regex after few
# spots) so short inputs cross every block and window edge.

_OLD_CANDIDATE = re.compile(rb"(?<![A-Za-z0-9])(?=([1-79][0-9]{2})([ -]?)([0-9]{3})\2([0-9]{3}))")


class _RegexScanner:
    """The scanner before the class-string prefilter: the regex at every offset."""

    def __init__(self) -> None:
        self._buf, self._base, self._cursor, self._found, self._finished = b"", 0, 0, False, False

    def feed(self, chunk: bytes) -> bool:
        if self._found or not chunk:
            return self._found
        buf = self._buf + bytes(chunk)
        self._found = self._scan(buf, final=False)
        end = self._base + len(buf)
        self._cursor = max(self._cursor, end - 13)
        keep_from = max(self._base, self._cursor - 2)
        self._buf = buf[keep_from - self._base :]
        self._base = keep_from
        return self._found

    def finish(self) -> bool:
        if not self._finished and not self._found:
            self._found = self._scan(self._buf, final=True)
        self._finished = True
        return self._found

    def _scan(self, buf: bytes, final: bool) -> bool:
        n = len(buf)
        for m in _OLD_CANDIDATE.finditer(buf, self._cursor - self._base):
            start, end, sep = m.start(), m.end(4), m.group(2)
            if not final and end + 2 > n:
                break
            if end < n and chr(buf[end]).isascii() and chr(buf[end]).isalnum():
                continue
            if sep:
                if start >= 2 and buf[start - 1 : start] == sep and 48 <= buf[start - 2] <= 57:
                    continue
                if end + 2 <= n and buf[end : end + 1] == sep and 48 <= buf[end + 1] <= 57:
                    continue
            if luhn_valid(m.group(1) + m.group(3) + m.group(4)):
                return True
        return False


def _brute_force(data: bytes) -> bool:
    """Every start, every form, the docstring's rules one by one."""
    n = len(data)

    def digit(i: int) -> bool:
        return 0 <= i < n and 48 <= data[i] <= 57

    def alnum(i: int) -> bool:
        return 0 <= i < n and (digit(i) or 65 <= data[i] <= 90 or 97 <= data[i] <= 122)

    for s in range(n):
        if alnum(s - 1):
            continue
        for sep in (b"", b" ", b"-"):
            k = len(sep)
            e = s + 9 + 2 * k
            if e > n:
                continue
            groups = data[s : s + 3], data[s + 3 + k : s + 6 + k], data[s + 6 + 2 * k : e]
            if sep and (data[s + 3 : s + 3 + k] != sep or data[s + 6 + k : s + 6 + 2 * k] != sep):
                continue
            digits = b"".join(groups)
            if not all(48 <= c <= 57 for c in digits) or digits[:1] in (b"0", b"8"):
                continue
            if alnum(e):
                continue
            if sep and ((data[s - 1 : s] == sep and digit(s - 2)) or (data[e : e + 1] == sep and digit(e + 1))):
                continue
            if luhn_valid(digits):
                return True
    return False


def _spotters():
    out = [search_mod.spots_py]
    if sin_mod._spots is not search_mod.spots_py:
        out.append(sin_mod._spots)
    return out


@contextlib.contextmanager
def _machinery(spots, *, small=0, block=8, window=13, spot_limit=2):
    saved = (sin_mod._spots, sin_mod._SMALL, sin_mod._BLOCK, search_mod.WINDOW, sin_mod._SPOTS)
    sin_mod._spots, sin_mod._SMALL, sin_mod._BLOCK, search_mod.WINDOW, sin_mod._SPOTS = (
        spots,
        small,
        block,
        window,
        spot_limit,
    )
    try:
        yield
    finally:
        sin_mod._spots, sin_mod._SMALL, sin_mod._BLOCK, search_mod.WINDOW, sin_mod._SPOTS = saved


def _feed_all(scanner, data: bytes, cuts: list[int]) -> bool:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        scanner.feed(data[a:b])
    return scanner.finish()


def _near_sin(draw_digits: str, luhn_ok: bool, sep1: str, sep2: str) -> str:
    d = _with_check_digit(draw_digits[:8]) if luhn_ok else draw_digits
    return d[:3] + sep1 + d[3:6] + sep2 + d[6:9]


# Text dense with digits, separators, letters and other bytes, with near-SINs
# (valid or not, separators matching or not) spliced in.
_pieces = st.one_of(
    st.text("0123456789 -", min_size=1, max_size=12),
    st.text("0123456789 -aZ._\n\xe9", min_size=1, max_size=12),
    st.builds(
        _near_sin,
        st.text("0123456789", min_size=9, max_size=9),
        st.booleans(),
        st.sampled_from(["", " ", "-", "."]),
        st.sampled_from(["", " ", "-", "."]),
    ),
)
dense = st.lists(_pieces, max_size=12).map(lambda parts: "".join(parts).encode())
sizes = st.sampled_from([1, 2, 3, 5, 8, 13, 64])
windows = st.sampled_from([13, 14, 17, 40, 28_000])
smalls = st.sampled_from([0, 0, 10, 256])
spot_limits = st.sampled_from([0, 1, 2, 16])


@settings(max_examples=1000, deadline=None)
@given(dense, cuts, sizes, windows, smalls, spot_limits)
def test_fast_scanner_agrees_with_references(data, cuts, block, window, small, spot_limit):
    expected = _brute_force(data)
    assert _feed_all(_RegexScanner(), data, []) == expected
    assert _feed_all(_RegexScanner(), data, cuts) == expected
    for spots in _spotters():
        with _machinery(spots, small=small, block=block, window=window, spot_limit=spot_limit):
            assert contains_sin(data) == expected, spots
            assert _feed_all(SinScanner(), data, cuts) == expected, spots
            assert _feed_all(SinScanner(), data, list(range(len(data)))) == expected, spots


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), cuts, sizes)
def test_fast_scanner_agrees_on_random_bytes(data, cuts, block):
    expected = _brute_force(data)
    for spots in _spotters():
        with _machinery(spots, block=block):
            assert contains_sin(data) == expected
            assert _feed_all(SinScanner(), data, cuts) == expected


@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_large_input_sins_at_block_edges_and_ends(sep):
    # Real block size: a SIN just before, across and after each block edge,
    # and at both ends of the stream, whole and in chunks of several sizes.
    rnd = random.Random(7)
    filler = bytes(rnd.choice(b"abc xyz,.;-\n\xe9") for _ in range(2 * sin_mod._BLOCK + 100))
    sin = _format(VALID, sep).encode()
    assert not contains_sin(filler)
    block = sin_mod._BLOCK
    for at in (0, 1, 2, block - 12, block - 2, block - 1, block, block + 1, 2 * block - 5, len(filler) - len(sin)):
        data = filler[:at] + sin + filler[at + len(sin) :]
        if at:
            data = data[: at - 1] + b" " + data[at:]
        if at + len(sin) < len(data):
            data = data[: at + len(sin)] + b" " + data[at + len(sin) + 1 :]
        assert len(data) == len(filler)
        assert contains_sin(data), at
        assert not contains_sin(data[:at] + b"x" + data[at + 1 :]), at  # first digit now a letter
        for chunk in (1 << 20, 1 << 16, 4099):
            assert _feed_all(SinScanner(), data, list(range(0, len(data), chunk))), (at, chunk)
        assert _feed_all(SinScanner(), memoryview(data), list(range(0, len(data), 1 << 16))), at


@pytest.mark.parametrize(
    "core",
    [
        b"130692544",
        b"130 692 544",
        b"130-692-544",
        b"1 130 692 544",
        b"130 692 544 5",
        b"130-692-544-1",
        b"9-130-692-544",
        b"130692544x",
        b"x130692544",
        b"1306925440",
        b"130 692-544",
        b"830692541",
        b"046 454 286",
        b"130.692.544",
    ],
)
def test_every_alignment_against_blocks_and_windows(core):
    # Each example at every offset from every block and window edge, in one
    # chunk and split at every point: the context bytes on both sides of a
    # candidate must come along with it whatever the alignment.
    for pad in range(14):
        for before, after in ((b"", b""), (b" ", b" "), (b"(", b")")):
            data = b"._" * pad + before + core + after + b"_." * 3
            expected = _brute_force(data)
            for spots in _spotters():
                for block in (1, 2, 3, 4, 5, 9, 13):
                    with _machinery(spots, block=block, window=13 + block % 5):
                        assert contains_sin(data) == expected, (pad, block)
                with _machinery(spots, block=5):
                    for cut in range(len(data) + 1):
                        assert _feed_all(SinScanner(), data, [cut]) == expected, (pad, cut)


def test_dense_spots_fall_back_to_the_regex():
    # A grouped number every 4 bytes, each one a longer number: thousands of
    # spots per block, all refused; then one real SIN at the end.
    data = b"123 456 789 " * 20_000
    assert not contains_sin(data)
    assert contains_sin(data + b"x " + _format(VALID, " ").encode() + b".")
    scanner = SinScanner()
    for i in range(0, len(data), 65536):
        assert not scanner.feed(data[i : i + 65536])
    assert not scanner.finish()


def test_chunks_of_any_buffer_type():
    data = ("lorem " * 100 + VALID + " ipsum" * 100).encode()
    for chunk in (data, bytearray(data), memoryview(data), array.array("B", data), memoryview(data)[::1]):
        assert _feed_all(SinScanner(), chunk, [300, 605, 700]) is True
    # A chunk is its raw bytes, whatever the item format (as bytes(chunk) gives).
    wide = array.array("H", (data + b" ")[: len(data) // 2 * 2])
    scanner = SinScanner()
    scanner.feed(wide)
    assert scanner.finish() == _brute_force(bytes(wide)) is True


def test_libc_search_is_used_where_available():
    if os.environ.get("REPLICATOR_SIN_PURE_PYTHON"):
        assert sin_mod._spots is search_mod.spots_py
    elif os.name == "posix":
        assert sin_mod._spots is not search_mod.spots_py
