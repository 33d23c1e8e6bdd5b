"""regions._body: regrouping a body into fixed-size chunks, and hashing it on the way."""

import hashlib
import os

import pytest

from regions._body import HASH_OFF_LOOP, Hashing, chunks, cut


async def _pieces(data: bytes, sizes):
    i = 0
    for n in sizes:
        yield data[i:i + n]
        i += n
    if i < len(data):
        yield data[i:]


@pytest.mark.parametrize("sizes", [[1] * 10, [7, 0, 30, 3], [100], [16, 16, 16], [5, 40, 2]])
async def test_an_iterator_is_regrouped_into_exact_chunks(sizes):
    data = os.urandom(90)
    out = [c async for c in chunks(_pieces(data, sizes), 16)]
    assert b"".join(out) == data
    assert all(len(c) == 16 for c in out[:-1]) and 0 < len(out[-1]) <= 16
    assert all(type(c) is bytes for c in out)


async def test_bytes_bodies():
    small = os.urandom(10)
    assert [c async for c in chunks(small, 16)] == [small]
    assert [c async for c in chunks(b"", 16)] == []
    big = bytearray(os.urandom(40))
    assert [c async for c in chunks(big, 16)] == [bytes(big[:16]), bytes(big[16:32]), bytes(big[32:])]


async def test_hashing_counts_and_hashes_big_and_small_chunks_in_order():
    parts = [os.urandom(HASH_OFF_LOOP), b"x" * 10, os.urandom(HASH_OFF_LOOP + 3)]

    async def source():
        for p in parts:
            yield p

    h = Hashing(source())
    assert [c async for c in h] == parts
    assert h.size == sum(map(len, parts)) and h.digest == hashlib.sha256(b"".join(parts)).hexdigest()


@pytest.mark.parametrize("sizes", [[16], [3, 13], [3, 14], [20], [0, 16, 0], [5, 5, 5, 5], [1, 40]])
def test_cut_takes_exactly_size_bytes_and_keeps_the_rest(sizes):
    data = os.urandom(sum(sizes))
    pieces, i = [], 0
    for n in sizes:
        pieces.append(data[i:i + n])
        i += n
    block, rest = cut(pieces, 16)
    assert type(block) is bytes and block == data[:16]
    assert b"".join(rest) == data[16:]


def test_cut_passes_one_exact_piece_through_uncopied():
    piece = os.urandom(16)
    block, rest = cut([piece, b"more"], 16)
    assert block is piece and rest == [b"more"]
