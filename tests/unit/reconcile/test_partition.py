"""--partition i/n splits the customer-tag space into disjoint, contiguous prefix sets that cover it."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.reconcile.partition import (
    ALPHABET,
    below,
    fraction,
    parse_partition,
    scope_prefixes,
    span,
    tag_prefixes,
)

tags = st.text(alphabet=ALPHABET, min_size=32, max_size=32)


def owners(tag: str, n: int) -> list[int]:
    return [i for i in range(1, n + 1) if any(tag.startswith(p) for p in tag_prefixes(i, n))]


@given(st.lists(tags, min_size=1, max_size=50), st.integers(1, 70))
def test_each_tag_is_in_exactly_one_partition(sample, n):
    for tag in sample:
        assert len(owners(tag, n)) == 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 12, 16, 32, 33, 100, 1024])
def test_partitions_are_contiguous_balanced_and_in_order(n):
    parts = [tag_prefixes(i, n) for i in range(1, n + 1)]
    flat = [p for part in parts for p in part]
    assert flat == sorted(flat, key=str.encode)  # contiguous slices, in byte order
    sizes = [sum(len(ALPHABET) ** -len(p) for p in part) for part in parts]
    assert abs(sum(sizes) - 1.0) < 1e-9
    assert max(sizes) / min(sizes) <= 1.34  # at most a quarter (plus rounding) apart
    assert all(len(part) <= 64 for part in parts)  # a handful of listings each


def test_byte_order_puts_digits_before_letters():
    assert tag_prefixes(1, 2)[0] == "2" and tag_prefixes(2, 2)[-1] == "z"
    assert tag_prefixes(1, 4) == list("234567ab")


def test_prefix_narrows_a_partition():
    assert scope_prefixes("v1/", 1, 1) == ["v1/" + c for c in ALPHABET]  # listed a few at a time
    assert scope_prefixes("v1/ab", 1, 1) == ["v1/ab"]
    assert scope_prefixes("v1/ab", 1, 4) == ["v1/ab"]
    assert scope_prefixes("v1/ab", 2, 4) == []
    assert scope_prefixes("v1/", 2, 4) == ["v1/" + c for c in "cdefghij"]
    with pytest.raises(ValueError):
        scope_prefixes("health/", 1, 1)
    with pytest.raises(ValueError, match="customer-tag space"):
        scope_prefixes("v1/A", 1, 1)  # no tag starts so: a typo, not an empty run


@pytest.mark.parametrize("bad", ["0/4", "5/4", "1/0", "x", "1/2/3", "1/2000"])
def test_bad_partitions_are_refused(bad):
    with pytest.raises(ValueError):
        parse_partition(bad)


def test_resume_skips_whole_prefixes_before_the_checkpoint():
    assert below("v1/a", "v1/b") and below("v1/2", "v1/a")
    assert not below("v1/b", "v1/b7x") and not below("v1/c", "v1/b")


def test_fraction_follows_byte_order_and_span_covers_the_partition():
    rnd = random.Random(1)
    sample = sorted(("v1/" + "".join(rnd.choice(ALPHABET) for _ in range(32)) for _ in range(200)), key=str.encode)
    fractions = [fraction(name) for name in sample]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] < 1
    assert span(scope_prefixes("v1/", 2, 4)) == (0.25, 0.5)
    assert span(["v1/"]) == (0.0, 1.0)
    assert fraction("health/probe") is None
