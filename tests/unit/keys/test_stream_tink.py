"""Interop with the real ``tink`` package: the Tink part of our ciphertext is
a Tink stream, and a Tink stream behind our header is our ciphertext."""

from __future__ import annotations

import io
import os

import pytest
from tink import TinkError

from keys import _header
from keys.stream import (
    SEGMENT_SIZE,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
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
