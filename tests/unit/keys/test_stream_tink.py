"""Interop with the real ``tink`` package: the Tink part of our ciphertext is
a Tink stream, and a Tink stream behind our header is our ciphertext."""

from __future__ import annotations

import io
import os

import pytest
import tink
from tink import TinkError, cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from keys import _header
from keys.ranges import decrypt_range, plan_range
from keys.stream import (
    SEGMENT_SIZE,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    object_ad,
)
from tests.support.tinkkeys import tink_aes256

KEY = os.urandom(32)
DEK = "dek_interop"
AD = object_ad("cust-7", "billing", "invoices/2024/03.pdf", "1711000000000-3-a")
OUR_HEADER = _header.size(DEK) - _header.TINK_HEADER_LEN  # bytes before Tink's own header


class _KeepOpen(io.BytesIO):
    def close(self) -> None:  # Tink closes the stream it writes to
        pass


def _tink_encrypt(primitive, plaintext: bytes, ad: bytes) -> bytes:
    out = _KeepOpen()
    with primitive.new_encrypting_stream(out, ad) as stream:
        stream.write(plaintext)
    return out.getvalue()


def _tink_decrypt(primitive, ciphertext: bytes, ad: bytes) -> bytes:
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), ad) as stream:
        return stream.read()


def _sizes(seg: int) -> list[int]:
    first, per = seg - 56, seg - 16
    return [0, 1, first - 1, first, first + 1, first + per, first + 2 * per + 7]


CASES = [(seg, n) for seg in (57, 64, 4096) for n in _sizes(seg)] + [(SEGMENT_SIZE, n) for n in _sizes(SEGMENT_SIZE)]


@pytest.mark.parametrize(("seg", "size"), CASES)
def test_tink_decrypts_ours(seg, size):
    pt = os.urandom(size)
    ct = encrypt_bytes(pt, KEY, DEK, AD, segment_size=seg)
    tink_part = ct[OUR_HEADER:]
    assert _tink_decrypt(tink_aes256(KEY, seg), tink_part, AD) == pt
    # Byte-for-byte the same shape as Tink's own output.
    assert len(_tink_encrypt(tink_aes256(KEY, seg), pt, AD)) == len(tink_part)


@pytest.mark.parametrize(("seg", "size"), CASES)
async def test_ours_decrypts_tink(seg, size):
    pt = os.urandom(size)
    tink_ct = _tink_encrypt(tink_aes256(KEY, seg), pt, AD)
    ours = _header.build(KEY, DEK, seg, tink_ct[: _header.TINK_HEADER_LEN], AD) + tink_ct[_header.TINK_HEADER_LEN :]
    assert decrypt_bytes(ours, KEY, AD) == pt

    async def chunks():
        for i in range(0, len(ours), 1000):
            yield ours[i : i + 1000]

    assert b"".join([p async for p in decrypt_stream(chunks(), KEY, AD)]) == pt


def test_tink_refuses_ours_under_another_ad():
    ct = encrypt_bytes(b"secret", KEY, DEK, AD)
    with pytest.raises(TinkError):
        _tink_decrypt(tink_aes256(KEY, SEGMENT_SIZE), ct[OUR_HEADER:], AD + b"x")


def test_tink_decrypts_the_golden_vectors():
    import json
    from pathlib import Path

    golden = json.loads((Path(__file__).parent / "golden" / "stream_v1.json").read_text())
    stored = [v for v in golden["vectors"] if "ciphertext_hex" in v]
    assert stored
    for v in stored:
        ct = bytes.fromhex(v["ciphertext_hex"])
        key, ad = bytes.fromhex(v["key_hex"]), bytes.fromhex(v["ad_hex"])
        tink_part = ct[_header.size(v["dek_id"]) - _header.TINK_HEADER_LEN :]
        assert _tink_decrypt(tink_aes256(key, v["segment_size"]), tink_part, ad).hex() == v["plaintext_hex"]


# ----- our production parameters, with a key Tink made from its own template ---------------------

FIRST_PT, PT_PER_SEG = SEGMENT_SIZE - 56, SEGMENT_SIZE - 16  # plaintext in segment 0, in each later one
PRODUCTION_SIZES = [
    0,
    1,
    FIRST_PT - 1,
    FIRST_PT,
    FIRST_PT + 1,
    PT_PER_SEG - 1,
    PT_PER_SEG,
    PT_PER_SEG + 1,
    FIRST_PT + PT_PER_SEG,
    3 * (1 << 20) + 12345,
]


def _tink_template_key() -> tuple[bytes, streaming_aead.StreamingAead]:
    """A fresh key made by Tink from its AES256_GCM_HKDF_1MB template, as raw
    bytes and as Tink's primitive; the template's parameters are ours."""
    streaming_aead.register()
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    out = io.BytesIO()
    cleartext_keyset_handle.write(tink.BinaryKeysetWriter(out), handle)
    (entry,) = tink_pb2.Keyset.FromString(out.getvalue()).key
    assert entry.output_prefix_type == tink_pb2.RAW  # no prefix: the Tink stream is all there is
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(entry.key_data.value)
    params = key.params
    assert (params.ciphertext_segment_size, params.derived_key_size, params.hkdf_hash_type) == (
        SEGMENT_SIZE,
        32,
        common_pb2.SHA256,
    )
    assert len(key.key_value) == 32
    return key.key_value, handle.primitive(streaming_aead.StreamingAead)


async def _chunked(data: bytes, size: int = 65536):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", PRODUCTION_SIZES)
async def test_production_parameters_round_trip_through_tink_both_ways(size):
    key, tink_primitive = _tink_template_key()
    pt = os.urandom(size)

    # Ours, streamed in 64 KiB chunks as the write path does, read by Tink.
    ours = b"".join([c async for c in encrypt_stream(_chunked(pt), key, DEK, AD)])
    assert len(ours) == len(encrypt_bytes(pt, key, DEK, AD))
    assert _tink_decrypt(tink_primitive, ours[OUR_HEADER:], AD) == pt

    # Tink's, behind our header, read by us: whole, streamed, and as ranges.
    tink_ct = _tink_encrypt(tink_primitive, pt, AD)
    assert len(tink_ct) == len(ours) - OUR_HEADER
    wrapped = _header.build(key, DEK, SEGMENT_SIZE, tink_ct[: _header.TINK_HEADER_LEN], AD)
    wrapped += tink_ct[_header.TINK_HEADER_LEN :]
    assert decrypt_bytes(wrapped, key, AD) == pt
    assert b"".join([p async for p in decrypt_stream(_chunked(wrapped), key, AD)]) == pt
    for start, end in {(0, 0), (size // 2, size - 1), (size - 1, size - 1), (FIRST_PT - 1, FIRST_PT)}:
        if 0 <= start < size:
            plan = plan_range(len(wrapped), DEK, start, end)
            got = decrypt_range(plan, wrapped[slice(*plan.header_range)], wrapped[slice(*plan.segments_range)], key, AD)
            assert got == pt[start : end + 1]
