"""keys._sin_search: the strstr search gives the answers of the bytearray.find one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keys import _sin_search as search


def test_the_fast_search_is_in_use_here():
    # Linux with glibc is every machine this runs on; without it the scanner falls back to the plain
    # search (correct, three times slower), and this says so instead of skipping the comparison.
    assert search.libc_spots is not None, "libc strstr is not usable: the SIN scanner runs on its plain search"


# Class strings dense with the two needles and near misses.
_pieces = st.sampled_from([b".", b"a", b"d", b"ddd", b".ddd.ddd.ddd.", b".ddddddddd.", b"ddddddddd", b".ddd."])
class_strings = st.lists(_pieces, max_size=40).map(lambda parts: bytearray(b"".join(parts)))


@settings(max_examples=500, deadline=None)
@given(class_strings, st.integers(0, 600), st.integers(0, 40), st.sampled_from([13, 14, 20, 28_000]))
def test_strstr_search_equals_find_search(classes, start, limit, window):
    start = min(start, len(classes))
    saved, search.WINDOW = search.WINDOW, window
    try:
        assert search.libc_spots is not None
        assert search.libc_spots(classes, start, limit) == search.spots_py(classes, start, limit)
    finally:
        search.WINDOW = saved


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, 2000))
def test_equal_on_translated_bytes(data, start):
    classes = bytearray(data).translate(search.CLASSES)
    start = min(start, len(classes))
    assert search.libc_spots is not None
    assert search.libc_spots(classes, start, 1 << 20) == search.spots_py(classes, start, 1 << 20)
