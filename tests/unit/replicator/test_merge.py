from hypothesis import given
from hypothesis import strategies as st

from regions import ObjectInfo
from replicator.merge import merged

names = st.lists(st.text(min_size=1, max_size=6), unique=True)


async def listing(ns):
    for n in sorted(ns, key=str.encode):
        yield ObjectInfo(n, 0, "")


@given(names, names)
async def test_merge_yields_each_name_once_in_byte_order_with_its_sides(a, b):
    out = [(n, x is not None, y is not None) async for n, x, y in merged(listing(a), listing(b))]
    assert [n for n, _, _ in out] == sorted(set(a) | set(b), key=str.encode)
    assert all(in_a == (n in a) and in_b == (n in b) for n, in_a, in_b in out)
