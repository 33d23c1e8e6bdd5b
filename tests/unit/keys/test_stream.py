"""keys.stream: round trips, chunking, and every way a ciphertext can be wrong."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import _header
from keys._segments import Sealer
from keys.stream import (
    SEGMENT_SIZE,
    DecryptionFailed,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    object_ad,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DEK = "dek_test"
AD = object_ad("cust-1", "account", "profile.json", "1700000000000-0-n1")
SEG = 64  # tiny segments: 8 plaintext bytes in segment 0, then 48
FIRST_PT, PT_PER_SEG = SEG - 56, SEG - 16


async def _aiter(chunks):
    for chunk in chunks:
        yield chunk


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def _collect(agen) -> bytes:
    return b"".join([piece async for piece in agen])


def _decrypt_streamed(ct: bytes, key=KEY, ad=AD, chunk: int = 7) -> bytes:
    return asyncio.run(_collect(decrypt_stream(_aiter(_chunks(ct, chunk)), key, ad)))


def _fixed_random(n: int) -> bytes:
    return bytes([0xA5]) * n


def _segments(ct: bytes, dek_id: str = DEK, seg: int = SEG) -> tuple[bytes, list[bytes]]:
    """Split a ciphertext into (everything before segment 0, segments)."""
    head = _header.size(dek_id)
    body = ct[head:]
    cuts = [0, seg - 40]
    while cuts[-1] < len(body):
        cuts.append(cuts[-1] + seg)
    return ct[:head], [body[a:b] for a, b in itertools.pairwise(cuts)]


def _fails(ct: bytes, key=KEY, ad=AD) -> None:
    """Both the whole-bytes and the streamed decryptor refuse ct, saying only
    "Decryption failed." and chaining nothing."""
    for decrypt in (lambda: decrypt_bytes(ct, key, ad), lambda: _decrypt_streamed(ct, key, ad, chunk=5)):
        with pytest.raises(DecryptionFailed) as info:
            decrypt()
        assert type(info.value) is DecryptionFailed
        assert str(info.value) == "Decryption failed."
        exc = info.value
        assert exc.__cause__ is None
        assert exc.__context__ is None or exc.__suppress_context__


# ----- round trips -------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, FIRST_PT - 1, FIRST_PT, FIRST_PT + 1, FIRST_PT + PT_PER_SEG, FIRST_PT + 3 * PT_PER_SEG + 5]
)
def test_round_trip_small_segments(size):
    pt = os.urandom(size)
    ct = encrypt_bytes(pt, KEY, DEK, AD, segment_size=SEG)
    assert len(ct) == ciphertext_size(size, DEK, SEG)
    assert decrypt_bytes(ct, KEY, AD) == pt
    assert _decrypt_streamed(ct) == pt


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - 56, SEGMENT_SIZE - 55, 2 * SEGMENT_SIZE + 12345])
async def test_round_trip_default_segments_streamed(size):
    pt = os.urandom(size)
    ct = await _collect(encrypt_stream(_aiter(_chunks(pt, 65536)), KEY, DEK, AD))
    assert len(ct) == ciphertext_size(size, DEK)
    assert struct.unpack(">I", ct[5:9])[0] == SEGMENT_SIZE
    assert await _collect(decrypt_stream(_aiter(_chunks(ct, 100_000)), KEY, AD)) == pt


def test_empty_plaintext_is_one_tag_only_segment():
    ct = encrypt_bytes(b"", KEY, DEK, AD)
    assert len(ct) == _header.size(DEK) + 16


def test_full_last_segment_has_no_empty_segment_after_it():
    # Tink's rule: a plaintext filling its last segment exactly ends there.
    ct = encrypt_bytes(b"x" * (FIRST_PT + PT_PER_SEG), KEY, DEK, AD, segment_size=SEG)
    assert [len(s) for s in _segments(ct)[1]] == [SEG - 40, SEG]


async def test_key_lookup_sync_and_async():
    ct = encrypt_bytes(b"hello", KEY, DEK, AD)
    seen = []

    def lookup(dek_id):
        seen.append(dek_id)
        return KEY

    async def alookup(dek_id):
        return KEY

    assert decrypt_bytes(ct, lookup, AD) == b"hello"
    assert await _collect(decrypt_stream(_aiter([ct]), lookup, AD)) == b"hello"
    assert await _collect(decrypt_stream(_aiter([ct]), alookup, AD)) == b"hello"
    assert seen == [DEK, DEK]


async def test_key_lookup_errors_propagate():
    class KeyGone(Exception):
        pass

    def lookup(dek_id):
        raise KeyGone(dek_id)

    ct = encrypt_bytes(b"hello", KEY, DEK, AD)
    with pytest.raises(KeyGone):
        await _collect(decrypt_stream(_aiter([ct]), lookup, AD))


async def test_bytearray_chunks_are_copied_not_aliased():
    # A caller reusing its buffer must not corrupt what we hold.
    buf = bytearray(b"a" * 100)

    async def reuse():
        for _ in range(3):
            yield buf
            buf[:] = b"b" * 100

    ct = await _collect(encrypt_stream(reuse(), KEY, DEK, AD, segment_size=SEG))
    assert decrypt_bytes(ct, KEY, AD) == b"a" * 100 + b"b" * 200


async def test_reused_ciphertext_buffer_is_not_aliased():
    ct = encrypt_bytes(b"z" * 300, KEY, DEK, AD, segment_size=SEG)
    buf = bytearray(10)

    async def reuse():
        for i in range(0, len(ct), 10):
            buf[:] = ct[i : i + 10].ljust(10, b"\0")
            yield memoryview(buf)[: len(ct[i : i + 10])]

    assert await _collect(decrypt_stream(reuse(), KEY, AD)) == b"z" * 300


def test_decryption_failed_pickles():
    import pickle

    exc = pickle.loads(pickle.dumps(DecryptionFailed()))
    assert type(exc) is DecryptionFailed and str(exc) == "Decryption failed."


def test_each_encryption_is_fresh():
    assert encrypt_bytes(b"same", KEY, DEK, AD) != encrypt_bytes(b"same", KEY, DEK, AD)


# ----- header and API checks ---------------------------------------------------------


def test_header_layout():
    ct = encrypt_bytes(b"", KEY, "dek_AB", AD, segment_size=SEG)
    assert ct[:4] == b"RPXE" and ct[4] == 1
    assert struct.unpack(">I", ct[5:9])[0] == SEG
    assert ct[9] == 6 and ct[10:16] == b"dek_AB"
    assert ct[16 + 32] == 40  # Tink header length byte


@pytest.mark.parametrize("dek_id", ["", "x" * 65, "has space", "dék", "tab\t"])
def test_bad_dek_id_refused(dek_id):
    with pytest.raises(ValueError):
        encrypt_bytes(b"", KEY, dek_id, AD)


@pytest.mark.parametrize("segment_size", [56, SEGMENT_SIZE + 1])
def test_bad_segment_size_refused(segment_size):
    with pytest.raises(ValueError):
        encrypt_bytes(b"", KEY, DEK, AD, segment_size=segment_size)


def test_bad_key_and_ad_refused_without_echoing_them():
    with pytest.raises(ValueError) as info:
        encrypt_bytes(b"", b"k" * 31, DEK, AD)
    assert "kkk" not in str(info.value)
    with pytest.raises(TypeError):
        encrypt_bytes(b"", KEY, DEK, "not bytes")


def test_object_ad_is_unambiguous():
    assert object_ad("a", "b", "c/d", "1") != object_ad("a", "b", "c", "d/1")
    assert object_ad("ab", "", "c", "1") != object_ad("a", "b", "c", "1")
    assert object_ad("a", "b", "c", "1") == (b"\0\0\0\x01a\0\0\0\x01b\0\0\0\x01c\0\0\0\x011")
    assert object_ad("é", "b", "c", "1")[:6] == b"\0\0\0\x02\xc3\xa9"
    with pytest.raises(TypeError):
        object_ad("a", "b", "c", 1)


@given(st.lists(st.text(max_size=5), min_size=4, max_size=4), st.lists(st.text(max_size=5), min_size=4, max_size=4))
def test_object_ad_injective(a, b):
    assert (object_ad(*a) == object_ad(*b)) == (a == b)


# ----- failures ------------------------------------------------------------------------

PT = bytes(range(256)) * 2  # 512 bytes: 12 segments of 64, the last partial
CT = encrypt_bytes(PT, KEY, DEK, AD, segment_size=SEG)


def test_fixture_is_multi_segment():
    head, segs = _segments(CT)
    assert len(segs) == 12 and len(segs[-1]) < SEG
    assert head + b"".join(segs) == CT


def test_truncation_anywhere():
    for n in range(len(CT)):
        _fails(CT[:n])


def test_every_bit_flip():
    for i in range(len(CT)):
        for bit in range(8):
            bad = bytearray(CT)
            bad[i] ^= 1 << bit
            _fails(bytes(bad))


def test_segments_reordered():
    head, segs = _segments(CT)
    segs[1], segs[2] = segs[2], segs[1]
    _fails(head + b"".join(segs))


def test_segment_dropped():
    head, segs = _segments(CT)
    _fails(head + b"".join(segs[:-1]))  # the last one: cut at a boundary
    _fails(head + b"".join(segs[:3] + segs[4:]))  # one in the middle
    _fails(head + b"".join(segs[1:]))  # the first


def test_segment_appended():
    _head, segs = _segments(CT)
    _fails(CT + segs[-1])
    _fails(CT + segs[3])
    _fails(CT + b"\0" * 16)
    _fails(CT + b"\0")


def test_full_last_segment_then_truncated_at_boundary():
    pt = b"y" * (FIRST_PT + 2 * PT_PER_SEG)
    head, segs = _segments(encrypt_bytes(pt, KEY, DEK, AD, segment_size=SEG))
    assert [len(s) for s in segs] == [SEG - 40, SEG, SEG]
    _fails(head + b"".join(segs[:2]))


def test_wrong_key():
    _fails(CT, key=OTHER_KEY)
    _fails(CT, key=lambda dek_id: OTHER_KEY)


def test_wrong_associated_data():
    _fails(CT, ad=object_ad("cust-1", "account", "profile.json", "1700000000000-0-n2"))
    _fails(CT, ad=AD + b"\0")
    _fails(CT, ad=b"")


def test_wrong_dek_id():
    # Same key, header rewritten to name another DEK of the same length.
    bad = CT.replace(DEK.encode(), b"dek_TEST", 1)
    assert bad != CT
    _fails(bad)
    # A header naming a longer id (everything else kept): fails too.
    raw = DEK.encode()
    longer = CT[:9] + bytes([len(raw) + 1]) + raw + b"x" + CT[10 + len(raw) :]
    _fails(longer)


def test_header_from_another_encryption_of_the_same_object():
    other = encrypt_bytes(PT, KEY, DEK, AD, segment_size=SEG)
    h1, s1 = _segments(CT)
    h2, s2 = _segments(other)
    _fails(h2 + b"".join(s1))
    _fails(h1 + b"".join(s2[:1] + s1[1:]))  # segments spliced between streams


def test_commitment_mismatch():
    head = _header.size(DEK) - 40 - 32
    bad = CT[:head] + bytes(32) + CT[head + 32 :]
    _fails(bad)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ct: b"XPXE" + ct[4:],  # magic
        lambda ct: ct[:4] + b"\x02" + ct[5:],  # unknown version
        lambda ct: ct[:5] + struct.pack(">I", 56) + ct[9:],  # segment size too small
        lambda ct: ct[:5] + struct.pack(">I", 1 << 30) + ct[9:],  # too large: would buffer 1 GiB
        lambda ct: ct[:9] + b"\0" + ct[10:],  # empty DEK id
        lambda ct: ct[:9] + b"\x41" + ct[10:],  # DEK id longer than 64
    ],
)
def test_malformed_header(mutate):
    _fails(mutate(CT))


def test_not_even_a_header():
    _fails(b"")
    _fails(b"RPXE")
    _fails(os.urandom(200))


def test_commitment_binds_the_associated_data():
    # A tampered AD fails at the header: before any segment is opened.
    with pytest.raises(DecryptionFailed):
        decrypt_bytes(CT[: _header.size(DEK)], KEY, AD + b"!")


async def test_stream_yields_verified_segments_then_fails():
    # Flip a bit in segment 3: plaintext of segments 0..2 comes out, then
    # the failure; nothing of segment 3 or later is released.
    head, segs = _segments(CT)
    bad = bytearray(segs[3])
    bad[0] ^= 1
    got = []
    with pytest.raises(DecryptionFailed):
        async for piece in decrypt_stream(_aiter([head, *segs[:3], bytes(bad), *segs[4:]]), KEY, AD):
            got.append(piece)
    assert b"".join(got) == PT[: FIRST_PT + 2 * PT_PER_SEG]


async def test_straddling_segment_fails_whole_at_default_size():
    # 64 KiB chunks: every 1 MiB segment straddles chunks and goes through
    # incremental GCM into its output buffer. A flipped bit in segment 1
    # releases segment 0 only, nothing of segment 1 or later.
    pt = os.urandom(2 * SEGMENT_SIZE + 1000)
    ct = bytearray(encrypt_bytes(pt, KEY, DEK, AD))
    ct[_header.size(DEK) + SEGMENT_SIZE - 40 + 12345] ^= 4
    got = []
    with pytest.raises(DecryptionFailed):
        async for piece in decrypt_stream(_aiter(_chunks(bytes(ct), 65536)), KEY, AD):
            got.append(piece)
    assert b"".join(got) == pt[: SEGMENT_SIZE - 56]


@pytest.mark.parametrize("chunk", [1000, 65536, SEGMENT_SIZE, SEGMENT_SIZE + 7])
async def test_one_bytes_object_per_segment(chunk):
    # Segments cut across chunks are written with update_into into a fresh
    # bytes (keys._segments._output): each comes out whole, as bytes, and right.
    pt = os.urandom(2 * SEGMENT_SIZE + 5)
    ct_pieces = [p async for p in encrypt_stream(_aiter(_chunks(pt, chunk)), KEY, DEK, AD)]
    assert all(type(p) is bytes for p in ct_pieces)
    last = len(pt) - (SEGMENT_SIZE - 56) - (SEGMENT_SIZE - 16)  # 77 plaintext bytes
    assert [len(p) for p in ct_pieces] == [_header.size(DEK), SEGMENT_SIZE - 40, SEGMENT_SIZE, last + 16]
    ct = b"".join(ct_pieces)
    assert decrypt_bytes(ct, KEY, AD) == pt
    pt_pieces = [p async for p in decrypt_stream(_aiter(_chunks(ct, chunk)), KEY, AD)]
    assert all(type(p) is bytes for p in pt_pieces)
    assert [len(p) for p in pt_pieces] == [SEGMENT_SIZE - 56, SEGMENT_SIZE - 16, last]
    assert b"".join(pt_pieces) == pt


# ----- chunking (hypothesis) ----------------------------------------------------------------


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 700),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
    seg=st.sampled_from([57, 64, 100, 256]),
)
def test_any_chunking_gives_the_same_ciphertext(size, cuts, seg):
    pt = os.urandom(size)
    whole = Sealer(KEY, DEK, AD, segment_size=seg, urandom=_fixed_random)
    expected = b"".join([whole.header, *whole.update(pt), *whole.finalize()])
    sealer = Sealer(KEY, DEK, AD, segment_size=seg, urandom=_fixed_random)
    out = [sealer.header]
    for chunk in _cut(pt, cuts):
        out += sealer.update(chunk)
        assert sealer.pending <= seg  # bounded: never more than a segment held
    out += sealer.finalize()
    assert b"".join(out) == expected
    assert len(expected) == ciphertext_size(size, DEK, seg)
    # And any chunking of the ciphertext decrypts to the plaintext.
    ct_chunks = _cut(expected, cuts[::-1])
    assert asyncio.run(_collect(decrypt_stream(_aiter(ct_chunks), KEY, AD))) == pt


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 3 * SEGMENT_SIZE), chunk=st.integers(4096, 3 * SEGMENT_SIZE))
def test_round_trip_random_sizes(size, chunk):
    pt = os.urandom(size)

    async def run():
        ct = await _collect(encrypt_stream(_aiter(_chunks(pt, chunk)), KEY, DEK, AD))
        assert len(ct) == ciphertext_size(size, DEK)
        return await _collect(decrypt_stream(_aiter(_chunks(ct, chunk)), KEY, AD))

    assert asyncio.run(run()) == pt


# ----- the HKDF written out over hashlib (the HMAC: test_fast_hmac.py) -----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ikm=st.binary(min_size=32, max_size=32), salt=st.binary(max_size=80), info=st.binary(max_size=300))
def test_hkdf_is_cryptography_hkdf(ikm, salt, info):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    assert _header.hkdf_sha256_32(ikm, salt, info) == HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def test_output_is_not_held_after_it_is_handed_on():
    # Once the consumer asks for the next piece, the stream keeps no
    # reference to the previous one (a held 1 MiB buffer cannot be reused
    # while hot in cache: decryption ran at half speed in bench/crypto.py).
    # Checked when the next piece arrives and whenever the stream reads its
    # next input chunk.
    import sys

    seg = 4096
    pt = os.urandom(10 * seg + 123)
    ct = encrypt_bytes(pt, KEY, DEK, AD, segment_size=seg)
    held = {}

    def only_the_consumer_holds_it():
        prev = held.get("prev")
        if prev is not None and len(prev) > 100:  # not the header (the sealer keeps it) or a tag
            assert sys.getrefcount(prev) == 3  # `held`, `prev` and the call's argument

    async def source(chunks):
        for chunk in chunks:
            only_the_consumer_holds_it()
            yield chunk

    async def consume(agen) -> int:
        total = 0
        async for piece in agen:
            only_the_consumer_holds_it()
            total += len(piece)
            held["prev"] = piece
            del piece
        return total

    for chunk in (seg // 3, seg, 3 * seg + 7, len(ct)):
        held.clear()
        assert asyncio.run(consume(decrypt_stream(source(_chunks(ct, chunk)), KEY, AD))) == len(pt)
        held.clear()
        assert asyncio.run(consume(encrypt_stream(source(_chunks(pt, chunk)), KEY, DEK, AD, segment_size=seg))) == len(
            ct
        )
