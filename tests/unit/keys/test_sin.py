"""keys.sin: examples, boundaries, streaming that ignores chunk boundaries, and its two engines
(compiled and pure) held to a brute force and to each other."""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import os
import random
import re
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keys._sin_pure as pure_mod
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
# keys.sin judges with one of two engines: the compiled one (keys/_sin_scan.c:
# SSE2 over the chunk in place, a seam copy for the bytes kept from earlier
# chunks) and the pure one (keys._sin_pure: a class-string search, libc strstr
# or bytearray.find, over blocks of the stream, then an exact check per spot).
# These tests hold each to two slow scanners: the regex scanner the pure one
# replaced (streaming, kept here verbatim) and a brute force written from the
# module docstring's rules alone. For the pure engine the block machinery is
# shrunk (tiny blocks, no small-input shortcut, tiny search windows, fallback
# to the regex after few spots) so short inputs cross every block and window
# edge; the compiled one's 16-byte steps are crossed by the inputs' lengths.

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


COMPILED = "compiled"  # in _spotters(): the compiled engine, which has no spotter


def _spotters():
    """The pure engine with each of its searches, then the compiled engine."""
    out = [search_mod.spots_py]
    if pure_mod._spots is not search_mod.spots_py:
        out.append(pure_mod._spots)
    assert sin_mod._sin_scan is not None, "keys._sin_scan is not built (pip install -e . builds it)"
    out.append(COMPILED)
    return out


@contextlib.contextmanager
def _machinery(spots, *, small=0, block=8, window=13, spot_limit=2):
    saved = (sin_mod._engine, pure_mod._spots, pure_mod._SMALL, pure_mod._BLOCK, search_mod.WINDOW, pure_mod._SPOTS)
    if spots == COMPILED:
        sin_mod._engine = sin_mod._sin_scan.scan
    else:
        sin_mod._engine = pure_mod.scan
        pure_mod._spots, pure_mod._SMALL, pure_mod._BLOCK, search_mod.WINDOW, pure_mod._SPOTS = (
            spots,
            small,
            block,
            window,
            spot_limit,
        )
    try:
        yield
    finally:
        sin_mod._engine, pure_mod._spots, pure_mod._SMALL, pure_mod._BLOCK, search_mod.WINDOW, pure_mod._SPOTS = saved


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


@contextlib.contextmanager
def _real_size(spots):
    """The engine ``spots`` names, with the pure engine's real block and window sizes."""
    with _machinery(
        spots, small=pure_mod._SMALL, block=pure_mod._BLOCK, window=search_mod.WINDOW, spot_limit=pure_mod._SPOTS
    ):
        yield


@pytest.mark.parametrize("engine", ["pure", COMPILED])
@pytest.mark.parametrize("sep", ["", " ", "-"])
def test_large_input_sins_at_block_edges_and_ends(sep, engine):
    # Real block size: a SIN just before, across and after each block edge,
    # and at both ends of the stream, whole and in chunks of several sizes
    # (the compiled engine releases the GIL on chunks of 64 KiB and more).
    with _real_size(pure_mod._spots if engine == "pure" else COMPILED):
        _large_input_sins_at_block_edges_and_ends(sep)


def _large_input_sins_at_block_edges_and_ends(sep):
    rnd = random.Random(7)
    filler = bytes(rnd.choice(b"abc xyz,.;-\n\xe9") for _ in range(2 * pure_mod._BLOCK + 100))
    sin = _format(VALID, sep).encode()
    assert not contains_sin(filler)
    block = pure_mod._BLOCK
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


@pytest.mark.parametrize("engine", ["pure", COMPILED])
def test_dense_spots_fall_back_to_the_regex(engine):
    # A grouped number every 4 bytes, each one a longer number: thousands of
    # spots per block, all refused; then one real SIN at the end.
    data = b"123 456 789 " * 20_000
    with _real_size(pure_mod._spots if engine == "pure" else COMPILED):
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


def test_the_compiled_engine_is_used_and_libc_search_where_available():
    if os.environ.get("REPLICATOR_SIN_PURE_PYTHON"):
        assert sin_mod._engine is pure_mod.scan
        assert pure_mod._spots is search_mod.spots_py
    else:
        assert sin_mod._sin_scan is not None, "keys._sin_scan is not built: the scanner runs on pure Python"
        assert sin_mod._engine is sin_mod._sin_scan.scan
        if os.name == "posix":
            assert pure_mod._spots is not search_mod.spots_py


# ----- the compiled engine against the pure one, on adversarial inputs -----------
#
# Inputs built to sit on every decision the judge makes: SINs (Luhn-valid,
# first digit allowed) and near misses (Luhn off by one digit, first digit 0
# or 8, mixed or doubled or wrong separators, one digit short or long), glued
# to letters, digits, separators or non-ASCII bytes, between random bytes;
# chunked at random points, which often fall inside a candidate, and one byte
# at a time. The compiled engine must find exactly what the pure one finds,
# and both what the brute force finds.


def _number(kind: str, digits: str) -> str:
    d = _with_check_digit(digits[:8])
    if kind == "luhn_off":
        d = d[:8] + str((int(d[8]) + 1) % 10)
    elif kind == "first_0_8":
        d = _with_check_digit(("0" if int(digits[8]) % 2 else "8") + d[1:8])
    elif kind == "short":
        d = d[:8]
    elif kind == "long":
        d = d + digits[8]
    return d


_odd_seps = st.sampled_from(["", " ", "-", ".", "  ", "_"])
_near = st.builds(
    lambda kind, digits, seps: (lambda d: d[:3] + seps[0] + d[3:6] + seps[1] + d[6:])(_number(kind, digits)).encode(),
    st.sampled_from(["valid", "valid", "valid", "luhn_off", "first_0_8", "short", "long"]),
    st.text("0123456789", min_size=9, max_size=9),
    st.one_of(separators.map(lambda sep: (sep, sep)), st.tuples(_odd_seps, _odd_seps)),
)
_glue = st.sampled_from(
    [b"", b" ", b"-", b"\n", b"x", b"Z", b"7", b"0", b" 1", b"-1", b"1 ", b"1-", b"\xe9", b":", b"("]
)
_adversarial = st.lists(
    st.one_of(
        st.tuples(_glue, _near, _glue).map(b"".join),
        st.binary(max_size=24),
        st.text("0123456789 -", max_size=16).map(str.encode),
    ),
    max_size=10,
).map(b"".join)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=40), _adversarial, cuts)
def test_compiled_engine_finds_exactly_what_the_pure_one_finds(prefix, data, cuts):
    data = prefix + data  # shifts every candidate across the compiled engine's 16-byte steps
    expected = _brute_force(data)
    found = {}
    for spots in (search_mod.spots_py, COMPILED):
        with _machinery(spots, block=8, window=13, spot_limit=2):
            found[spots] = (
                contains_sin(data),
                _feed_all(SinScanner(), data, cuts),
                # Regular chunks of several sizes put a chunk edge at every offset of some candidate.
                *(_feed_all(SinScanner(), data, list(range(0, len(data), size))) for size in (1, 2, 3, 5, 17, 33)),
            )
    assert found[COMPILED] == found[search_mod.spots_py] == (expected,) * 8


@settings(max_examples=200, deadline=None)
@given(_adversarial, st.integers(0, 1 << 17), cuts)
def test_compiled_engine_agrees_on_large_chunks(data, at, cuts):
    # Past 64 KiB the compiled engine scans with the GIL released: the same answers there.
    filler = (b"lorem 12345 ipsum 0x1f2e dolor 2024-05-01 " * 4000)[: 1 << 17]
    big = filler[:at] + b"\n" + data + b"\n" + filler[at:]
    expected = _brute_force(b"\n" + data + b"\n")  # the filler holds no SIN, and newlines part it from data
    for spots in (pure_mod._spots, COMPILED):
        with _real_size(spots):
            assert contains_sin(big) == expected, spots
            assert _feed_all(SinScanner(), big, cuts + [at, at + 1 + len(data)]) == expected, spots


# ----- the compiled scan releases the GIL -------------------------------------------
#
# With a long switch interval, a thread that holds the GIL keeps it until it
# blocks; so another thread (or the event loop) makes progress during a scan
# only if the scan lets go of the GIL.

_BIG = bytes(32 << 20)  # no candidate anywhere: every byte is scanned


@contextlib.contextmanager
def _long_switch_interval():
    saved = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def _ticks_inside(scan, times: int) -> tuple[int, int]:
    """Run ``scan`` ``times`` times in a thread while this one ticks every 0.2 ms;
    return (ticks that fell inside a scan, all ticks)."""
    windows, ticks = [], []

    def scans():
        for _ in range(times):
            start = time.perf_counter()
            scan()
            windows.append((start, time.perf_counter()))

    with _long_switch_interval():
        worker = threading.Thread(target=scans)
        worker.start()
        while worker.is_alive():
            ticks.append(time.perf_counter())
            time.sleep(0.0002)
        worker.join()
    assert len(windows) == times
    return sum(any(a < t < b for a, b in windows) for t in ticks), len(ticks)


def test_compiled_scan_lets_other_threads_run():
    with _machinery(COMPILED):
        during, total = _ticks_inside(lambda: SinScanner().feed(_BIG), 20)
    assert during >= 10, f"{during} of {total} ticks of the other thread fell inside a scan"
    # The control: a call that holds the GIL (bytes.translate over the same 32 MiB) lets no tick in.
    table = bytes(range(256))
    during, total = _ticks_inside(lambda: _BIG.translate(table), 5)
    assert during == 0, f"{during} of {total} ticks fell inside a call that holds the GIL"


async def test_afeed_keeps_the_event_loop_serving():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.0002)
            ticks += 1

    with _long_switch_interval(), _machinery(COMPILED):
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        scanner, before = SinScanner(), ticks
        for _ in range(10):
            assert not await scanner.afeed(_BIG)  # 32 MiB: off the loop, without the GIL
        during = ticks - before
        task.cancel()
    assert during >= 10, f"the event loop ticked {during} times during 10 scans of 32 MiB"


async def test_afeed_scans_small_chunks_in_place_and_finds_a_sin():
    scanner = SinScanner()
    assert not await scanner.afeed(b"x" * 100 + b" 130 692")
    assert await scanner.afeed(b" 544 and more" + bytes(sin_mod.OFF_LOOP_BYTES))
