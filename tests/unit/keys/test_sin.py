"""keys.sin: examples, boundaries, and streaming that ignores chunk boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.sin import SinScanner, contains_sin, luhn_valid

VALID = "130692544"  # Luhn-valid, first digit 1


def _with_check_digit(first8: str) -> str:
    return next(first8 + d for d in "0123456789" if luhn_valid(first8 + d))


def _chunked(data: bytes, cuts: list[int]) -> bool:
    scanner = SinScanner()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(points, points[1:], strict=False):
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
