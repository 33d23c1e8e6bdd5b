"""regions._body: regrouping a body into fixed-size chunks, and hashing it on the way."""

import asyncio
import hashlib
import os

import pytest

from regions._body import (
    HASH_OFF_LOOP,
    SEND_SLICE,
    AheadBudget,
    Hashing,
    chunks,
    cut,
    send_slices,
    upload_ahead,
    window,
)


async def _pieces(data: bytes, sizes):
    i = 0
    for n in sizes:
        yield data[i : i + n]
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
        pieces.append(data[i : i + n])
        i += n
    block, rest = cut(pieces, 16)
    assert type(block) is bytes and block == data[:16]
    assert b"".join(rest) == data[16:]


def test_cut_passes_one_exact_piece_through_uncopied():
    piece = os.urandom(16)
    block, rest = cut([piece, b"more"], 16)
    assert block is piece and rest == [b"more"]


async def _parts(n: int, log: list, fail_at: int | None = None):
    for i in range(n):
        await asyncio.sleep(0)  # reading waits on the network
        if i == fail_at:
            raise ConnectionResetError("client went away")
        log.append(f"read {i}")
        yield i


@pytest.mark.parametrize("ahead", [1, 2])
async def test_upload_ahead_reads_the_next_part_while_uploading_never_waits_for_an_answer_and_keeps_order(ahead):
    log: list[str] = []
    flying = peak = 0

    async def upload(i: int, part: int) -> str:
        nonlocal flying, peak
        flying += 1
        peak = max(peak, flying)
        log.append(f"start {i}")
        await asyncio.sleep(0.01 * (3 - i % 3))  # later parts may finish first
        log.append(f"end {i}")
        flying -= 1
        return f"done {part}"

    assert await upload_ahead(_parts(7, log), upload, ahead=ahead) == [f"done {i}" for i in range(7)]
    assert peak == ahead + 1  # the part just read starts at once
    # Part 1 is read while part 0 uploads, and starts without waiting for part 0's answer.
    assert log.index("start 0") < log.index("read 1") < log.index("start 1") < log.index("end 0")
    # The next part is read only while at most `ahead` upload: at most ahead + 1 parts held.
    assert log.index("end 0") < log.index(f"read {ahead + 1}")


async def test_upload_ahead_cancels_uploads_in_flight_when_the_body_fails():
    cancelled, log = [], []

    async def upload(i: int, part: int) -> None:
        try:
            await asyncio.sleep(10 if i else 0)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    with pytest.raises(ConnectionResetError):
        await upload_ahead(_parts(5, log, fail_at=2), upload)
    assert cancelled == [1] and log == ["read 0", "read 1"]


async def test_upload_ahead_raises_the_first_failed_upload():
    async def upload(i: int, part: int) -> int:
        if i == 1:
            raise OSError("segment refused")
        return i

    with pytest.raises(OSError, match="segment refused"):
        await upload_ahead(_parts(4, []), upload)


async def test_puts_read_ahead_only_within_their_shared_budget_and_each_still_moves():
    budget = AheadBudget(25)  # two parts of 10 read ahead, all puts together
    held = {"now": 0, "peak": 0}  # parts read and not yet uploaded, every put
    ahead_peak = 0

    async def parts(n: int):
        for _ in range(n):
            await asyncio.sleep(0)
            held["now"] += 1
            held["peak"] = max(held["peak"], held["now"])
            yield bytes(10)

    async def upload(i: int, part: bytes) -> int:
        nonlocal ahead_peak
        ahead_peak = max(ahead_peak, budget.held)
        await asyncio.sleep(0.005)
        held["now"] -= 1
        return i

    results = await asyncio.gather(*(upload_ahead(parts(6), upload, ahead=3, budget=budget) for _ in range(4)))
    assert results == [list(range(6))] * 4  # every put finished, in order
    assert ahead_peak <= 20  # never more read ahead than the budget has room for
    assert held["peak"] <= 4 + 2  # one part each, and two ahead in all (ahead=3 alone would let each hold 4)
    await asyncio.sleep(0)  # the last uploads' done callbacks
    assert budget.held == 0


async def test_a_failed_put_gives_its_budget_back():
    budget = AheadBudget(100)

    async def upload(i: int, part: int) -> int:
        await asyncio.sleep(0.01)
        return i

    with pytest.raises(ConnectionResetError):
        await upload_ahead(_parts(5, [], fail_at=3), upload, ahead=2, budget=budget, size=lambda _: 10)
    await asyncio.sleep(0)
    assert budget.held == 0


@pytest.mark.parametrize("start,length", [(0, 1), (0, 30), (3, 4), (9, 12), (29, 1), (25, 100)])
async def test_window_cuts_a_whole_answer_to_the_range(start, length):
    data = bytes(range(30))

    async def pieces():
        for i in range(0, 30, 7):
            yield data[i : i + 7]

    assert b"".join([c async for c in window(pieces(), start, length)]) == data[start : start + length]


async def test_a_body_is_sent_as_slices_of_the_pieces_themselves():
    pieces = [os.urandom(SEND_SLICE * 2 + 5), b"", os.urandom(7), memoryview(os.urandom(SEND_SLICE))[3:]]
    out = [s async for s in send_slices(pieces)]
    assert b"".join(out) == b"".join(map(bytes, pieces))
    assert [len(s) for s in out] == [SEND_SLICE, SEND_SLICE, 5, 7, SEND_SLICE - 3]
    # No copy: each slice is a view of a piece as given.
    assert out[0].obj is pieces[0] and out[3].obj is pieces[2] and out[4].obj is pieces[3].obj
