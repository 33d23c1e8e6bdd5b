"""keys.ranges: plans, range decryption from only the planned bytes, and tampering."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import _header
from keys.ranges import (
    RangeNotSatisfiable,
    RangePlan,
    decrypt_range,
    decrypt_range_stream,
    plaintext_size,
    plan_range,
)
from keys.stream import SEGMENT_SIZE, DecryptionFailed, ciphertext_size, decrypt_bytes, encrypt_bytes, object_ad

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DEK = "dek_test"
AD = object_ad("cust-1", "account", "profile.json", "1700000000000-0-n1")
SEG = 64  # tiny segments: 8 plaintext bytes in segment 0, then 48
FIRST_PT, PT_PER_SEG = SEG - 56, SEG - 16
MIB_FIRST_PT, MIB_PT_PER_SEG = SEGMENT_SIZE - 56, SEGMENT_SIZE - 16


def _plaintext(size: int) -> bytes:
    return random.Random(size).randbytes(size)


_CACHE: dict[tuple[int, int], tuple[bytes, bytes]] = {}


def _object(size: int, seg: int = SEG) -> tuple[bytes, bytes]:
    if (size, seg) not in _CACHE:
        pt = _plaintext(size)
        _CACHE[size, seg] = pt, encrypt_bytes(pt, KEY, DEK, AD, segment_size=seg)
    return _CACHE[size, seg]


def _fetch(ct: bytes, plan: RangePlan) -> tuple[bytes, bytes]:
    """Only the planned bytes: the decryptor sees nothing else."""
    return ct[slice(*plan.header_range)], ct[slice(*plan.segments_range)]


async def _aiter(chunks):
    for chunk in chunks:
        yield chunk


def _streamed(plan: RangePlan, header: bytes, body: bytes, key=KEY, chunk: int = 5) -> bytes:
    async def run() -> bytes:
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        return b"".join([p async for p in decrypt_range_stream(plan, header, _aiter(pieces), key, AD)])

    return asyncio.run(run())


def _boundary_ranges(size: int, first: int, per: int) -> list[tuple[int, int]]:
    """(0,0), (0,1), the last byte, segment boundaries ± 1, spans of three segments."""
    ranges = {(0, 0), (0, 1), (size - 1, size - 1), (0, size - 1)}
    boundaries = [first + k * per for k in range(size // per + 2)]
    for b in boundaries:
        for s in (b - 1, b, b + 1):
            for e in (b - 1, b, b + 1, b + per - 1, b + per, b + 2 * per - 1, b + 2 * per + 1):
                if 0 <= s <= e:
                    ranges.add((s, e))
    return sorted((s, e) for s, e in ranges if 0 <= s < size)


def _check(size: int, start: int, end: int, seg: int = SEG) -> RangePlan:
    pt, ct = _object(size, seg)
    plan = plan_range(len(ct), DEK, start, end, segment_size=seg)
    header, body = _fetch(ct, plan)
    want = pt[start : end + 1]
    assert decrypt_range(plan, header, body, KEY, AD) == want
    assert _streamed(plan, header, body, chunk=5 if seg < 1000 else 65536 - 3) == want
    assert plan.length == len(want)
    return plan


# ----- plans --------------------------------------------------------------------------------


@pytest.mark.parametrize("seg", [SEG, 57, 100, SEGMENT_SIZE])
@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 55, 56, 57, 104, 105, 1000, (1 << 20) + 3])
def test_plaintext_size_inverts_ciphertext_size(size, seg):
    assert plaintext_size(ciphertext_size(size, DEK, seg), DEK, seg) == size


@pytest.mark.parametrize("seg", [SEG, 57])
def test_impossible_stored_sizes_fail_like_a_bad_ciphertext(seg):
    possible = {ciphertext_size(n, DEK, seg) for n in range(600)}
    for stored in range(max(possible)):
        if stored in possible:
            continue
        with pytest.raises(DecryptionFailed):
            plaintext_size(stored, DEK, seg)
        with pytest.raises(DecryptionFailed):
            plan_range(stored, DEK, 0, 0, segment_size=seg)


def test_plan_segment_zero_and_one_arithmetic():
    head = _header.size(DEK)
    stored = ciphertext_size(200, DEK, SEG)  # 8 + 48*4 = 200: five segments, the last full
    p = plan_range(stored, DEK, 0, 0, segment_size=SEG)
    assert (p.first_segment, p.last_segment, p.last_is_final, p.skip) == (0, 0, False, 0)
    assert p.header_range == (0, head)
    assert p.segments_range == (head, head + SEG - 40)
    p = plan_range(stored, DEK, FIRST_PT, FIRST_PT, segment_size=SEG)  # first byte of segment 1
    assert (p.first_segment, p.last_segment, p.skip) == (1, 1, 0)
    assert p.segments_range == (head + SEG - 40, head + 2 * SEG - 40)
    p = plan_range(stored, DEK, FIRST_PT - 1, FIRST_PT + PT_PER_SEG, segment_size=SEG)  # spans 0..2
    assert (p.first_segment, p.last_segment, p.skip, p.last_is_final) == (0, 2, FIRST_PT - 1, False)
    assert p.segments_range == (head, head + 3 * SEG - 40)
    p = plan_range(stored, DEK, 199, 10_000, segment_size=SEG)  # the last byte, end clipped
    assert (p.first_segment, p.last_segment, p.last_is_final, p.start, p.end) == (4, 4, True, 199, 199)
    assert p.segments_range == (head + 4 * SEG - 40, stored) and stored == head + 5 * SEG - 40
    p = plan_range(stored, DEK, 10, None, segment_size=SEG)
    assert (p.first_segment, p.last_segment, p.last_is_final, p.skip, p.end) == (1, 4, True, 2, 199)


def test_plan_at_one_mib_segments():
    stored = ciphertext_size(3 * SEGMENT_SIZE, DEK)
    head = _header.size(DEK)
    p = plan_range(stored, DEK, MIB_FIRST_PT, MIB_FIRST_PT + MIB_PT_PER_SEG)
    assert (p.first_segment, p.last_segment, p.skip, p.last_is_final) == (1, 2, 0, False)
    assert p.segments_range == (head + SEGMENT_SIZE - 40, head + 3 * SEGMENT_SIZE - 40)


@pytest.mark.parametrize("seg", [SEG, 57])
@pytest.mark.parametrize("size", [1, 7, 8, 9, 55, 56, 57, 103, 104, 105, 152, 153, 300])
def test_every_boundary_range(size, seg):
    first, per = seg - 56, seg - 16
    for start, end in _boundary_ranges(size, first, per):
        _check(size, start, end, seg)


@pytest.mark.parametrize("size", [1, MIB_FIRST_PT, MIB_FIRST_PT + 1, MIB_FIRST_PT + MIB_PT_PER_SEG + 1])
def test_boundary_ranges_at_one_mib_segments(size):
    pick = {(0, 0), (0, 1), (size - 1, size - 1), (0, size - 1)}
    for b in (MIB_FIRST_PT, MIB_FIRST_PT + MIB_PT_PER_SEG):
        pick |= {(b - 1, b), (b, b), (b + 1, b + 1), (b - 1, b + MIB_PT_PER_SEG + 1)}
    for start, end in sorted(pick):
        if 0 <= start < size:
            _check(size, start, end, SEGMENT_SIZE)


def test_three_segments_at_one_mib():
    size = MIB_FIRST_PT + 2 * MIB_PT_PER_SEG + 10
    plan = _check(size, MIB_FIRST_PT - 5, MIB_FIRST_PT + MIB_PT_PER_SEG + 5, SEGMENT_SIZE)
    assert (plan.first_segment, plan.last_segment, plan.last_is_final) == (0, 2, False)


@pytest.mark.parametrize("size", [0, 1, 9, 104])
def test_start_past_the_end_is_not_satisfiable(size):
    _, ct = _object(size)
    for start in (size, size + 1, size + 1000):
        with pytest.raises(RangeNotSatisfiable) as caught:
            plan_range(len(ct), DEK, start, None, segment_size=SEG)
        assert caught.value.plaintext_size == size


def test_malformed_ranges_refused():
    _, ct = _object(100)
    for start, end in ((-1, 3), (5, 4)):
        with pytest.raises(ValueError):
            plan_range(len(ct), DEK, start, end, segment_size=SEG)
    with pytest.raises(ValueError):
        plan_range(len(ct), DEK, 0, 0, segment_size=56)


# ----- decryption ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 700),
    seg=st.sampled_from([57, SEG, 100, 333]),
    data=st.data(),
)
def test_any_range_equals_the_full_decrypt_slice(size, seg, data):
    pt, ct = _object(size, seg)
    full = decrypt_bytes(ct, KEY, AD)
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size + 50))
    chunk = data.draw(st.integers(1, 130))
    plan = plan_range(len(ct), DEK, start, end, segment_size=seg)
    header, body = _fetch(ct, plan)
    assert decrypt_range(plan, header, body, KEY, AD) == full[start : end + 1] == pt[start : end + 1]
    assert _streamed(plan, header, body, chunk=chunk) == full[start : end + 1]


async def test_key_lookup_sync_and_async():
    pt, ct = _object(300)
    plan = plan_range(len(ct), DEK, 100, 200, segment_size=SEG)
    header, body = _fetch(ct, plan)
    seen = []

    async def lookup(dek_id: str) -> bytes:
        seen.append(dek_id)
        return KEY

    out = b"".join([p async for p in decrypt_range_stream(plan, header, _aiter([body]), lookup, AD)])
    assert out == pt[100:201] and seen == [DEK]
    assert decrypt_range(plan, header, body, lambda d: KEY, AD) == pt[100:201]


async def test_stream_yields_one_piece_per_segment():
    pt, ct = _object(300)
    plan = plan_range(len(ct), DEK, 3, 250, segment_size=SEG)
    header, body = _fetch(ct, plan)
    pieces = [p async for p in decrypt_range_stream(plan, header, _aiter([body[:10], body[10:]]), KEY, AD)]
    assert len(pieces) == plan.last_segment - plan.first_segment + 1
    assert b"".join(pieces) == pt[3:251]


# ----- tampering ----------------------------------------------------------------------------


def _planned(size: int = 300, start: int = 20, end: int = 150) -> tuple[RangePlan, bytes, bytes, bytes]:
    _, ct = _object(size)
    plan = plan_range(len(ct), DEK, start, end, segment_size=SEG)
    header, body = _fetch(ct, plan)
    return plan, header, body, ct


def _fails(plan: RangePlan, header: bytes, body: bytes, key=KEY, ad=AD) -> None:
    with pytest.raises(DecryptionFailed):
        decrypt_range(plan, header, body, key, ad)

    async def run() -> None:
        async for _ in decrypt_range_stream(plan, header, _aiter([body]), key, ad):
            pass

    with pytest.raises(DecryptionFailed):
        asyncio.run(run())


def test_every_bit_flip_in_the_segments():
    plan, header, body, _ = _planned()
    for i in range(len(body)):
        for bit in (0, 7):
            flipped = bytearray(body)
            flipped[i] ^= 1 << bit
            with pytest.raises(DecryptionFailed):
                decrypt_range(plan, header, bytes(flipped), KEY, AD)


def test_bit_flip_in_the_header():
    plan, header, body, _ = _planned()
    for i in range(len(header)):
        flipped = bytearray(header)
        flipped[i] ^= 0x01
        _fails(plan, bytes(flipped), body)


@pytest.mark.parametrize("first", [1, 2, 3])
def test_segment_fed_at_the_wrong_index(first):
    _, ct = _object(500)  # segments 0..10, all inner ones SEG long
    plan = plan_range(len(ct), DEK, FIRST_PT + first * PT_PER_SEG, FIRST_PT + first * PT_PER_SEG, segment_size=SEG)
    assert plan.first_segment == first + 1
    header = ct[slice(*plan.header_range)]
    off, stop = plan.segments_range
    assert decrypt_range(plan, header, ct[off:stop], KEY, AD)  # the right bytes open
    _fails(plan, header, ct[off - SEG : stop - SEG])  # segment i's bytes as segment i + 1
    _fails(plan, header, ct[off + SEG : stop + SEG])  # segment i + 2's bytes as segment i + 1


def test_final_segment_opened_as_inner_or_inner_as_final():
    _, ct = _object(200)  # five segments, the last full: inner and final look alike
    inner = plan_range(len(ct), DEK, 100, 100, segment_size=SEG)
    final = plan_range(len(ct), DEK, 199, 199, segment_size=SEG)
    assert not inner.last_is_final and final.last_is_final
    header = ct[slice(*inner.header_range)]
    wrong_final = RangePlan(**{**_fields(final), "last_is_final": False})
    _fails(wrong_final, header, ct[slice(*final.segments_range)])
    wrong_inner = RangePlan(**{**_fields(inner), "last_is_final": True})
    _fails(wrong_inner, header, ct[slice(*inner.segments_range)])


def _fields(plan: RangePlan) -> dict[str, object]:
    return {name: getattr(plan, name) for name in RangePlan.__dataclass_fields__}


def test_too_few_or_too_many_bytes():
    plan, header, body, ct = _planned()
    _fails(plan, header, body[:-1])
    _fails(plan, header, body + b"\x00")
    _fails(plan, header, b"")
    _fails(plan, header[:-1], body)
    _fails(plan, header + body[:1], body[1:])


def test_wrong_key_and_wrong_associated_data():
    plan, header, body, _ = _planned()
    _fails(plan, header, body, key=OTHER_KEY)
    _fails(plan, header, body, ad=AD + b"x")
    _fails(plan, header, body, ad=object_ad("cust-1", "account", "profile.json", "1700000000000-0-n2"))


def test_commitment_mismatch_fails_as_a_full_read_does():
    plan, header, body, ct = _planned()
    head = _header.parse(header, 57, SEGMENT_SIZE)
    assert head is not None
    at = len(head.prefix)
    bad = header[:at] + bytes(32) + header[at + 32 :]
    with pytest.raises(DecryptionFailed) as full:
        decrypt_bytes(bad + ct[len(header) :], KEY, AD)
    with pytest.raises(DecryptionFailed) as ranged:
        decrypt_range(plan, bad, body, KEY, AD)
    assert type(full.value) is type(ranged.value) and str(full.value) == str(ranged.value)


def test_header_of_another_object_or_dek():
    plan, header, body, _ = _planned()
    other = encrypt_bytes(_plaintext(300), KEY, DEK, AD, segment_size=SEG)  # another salt and nonce prefix
    _fails(plan, other[: len(header)], body)
    other_dek = encrypt_bytes(_plaintext(300), KEY, "dek_tesx", AD, segment_size=SEG)
    _fails(plan, other_dek[: len(header)], body)  # same length, another DEK id
    other_seg = encrypt_bytes(_plaintext(300), KEY, DEK, AD, segment_size=SEG + 1)
    _fails(plan, other_seg[: len(header)], body)  # the plan's segment size is not the object's
