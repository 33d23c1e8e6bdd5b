"""Tink's own known answers: tink-java's AES-GCM-HKDF streaming vectors, opened and sealed by our segment code.

``golden/tink_java_aes_gcm_hkdf_streaming.json`` holds the eight vectors of
tink-java's ``AesGcmHkdfStreamingTestUtil`` (repository, path and commit
recorded in the file), the hand-built three-segment one among them. Each is
a raw Tink stream: Tink header (length byte, salt, 7-byte nonce prefix),
then segments.

What our code supports, and so what these tests drive: ``keys._segments``
is Tink's segment layer (segment cutting, first segment shorter by the
header, nonce = prefix ‖ u32 index ‖ last flag, AES-GCM with no associated
data, the last segment possibly short or, for an empty plaintext, a bare
tag), and it runs unchanged here on every vector, whole, chunked and one
segment at a time (as a range read does). Two parameters the vectors use
are not ones our code offers, and the test supplies them instead:

* the derived key. We derive with HKDF-SHA256 to 32 bytes
  (``_header.hkdf_sha256_32``), Tink's ``AES256_GCM_HKDF_*`` templates and
  our production parameters; every vector here uses either HKDF-SHA1 or
  SHA-512, or a 16-byte derived key. For the SHA-256 vector (vector 2) the
  key is still ours: HKDF output is a prefix of a longer output, so its
  16-byte key is the first half of ``hkdf_sha256_32``. For the others,
  ``cryptography``'s HKDF with the vector's hash and length makes it.
* the Tink header length: ours is fixed at 40 bytes (32-byte salt, for
  32-byte derived keys); vectors 0..4 have 24-byte headers (16-byte salt).
  For those the test sets the nonce prefix and the length of segment 0
  from the vector's header (``_Segments._prefix`` and ``_want``); vectors 5..7
  have 40-byte headers and our constructor's own values are asserted.

Tink's ``firstSegmentOffset`` (ciphertext starting some bytes into the
channel) is not a vector parameter and our code has none: our own header
comes in front of the Tink header instead (``keys/stream.py``).
"""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys import _header
from keys._segments import TAG_LEN, DecryptionFailed, _Segments
from tests.support.tinkkeys import tink_streaming

GOLDEN = Path(__file__).parent / "golden" / "tink_java_aes_gcm_hkdf_streaming.json"
DOC = json.loads(GOLDEN.read_text())
VECTORS = DOC["vectors"]
NONCE_PREFIX_LEN = 7


def _bytes(v: dict, field: str) -> bytes:
    return bytes.fromhex(v[field + "_hex"])


def _header_len(v: dict) -> int:
    return 1 + v["derived_key_size"] + NONCE_PREFIX_LEN


def _derived_key(v: dict, ad: bytes) -> bytes:
    key, size = _bytes(v, "key"), v["derived_key_size"]
    salt = _bytes(v, "ciphertext")[1 : 1 + size]
    if v["hkdf_hash"] == "SHA256":
        return _header.hkdf_sha256_32(key, salt, ad)[:size]
    return HKDF(getattr(hashes, v["hkdf_hash"])(), size, salt, ad).derive(key)


def _segments(v: dict, decrypt: bool, first_index: int = 0, ad: bytes | None = None) -> _Segments:
    """Our segment code for the vector's stream, with the vector's derived
    key (and, for a 24-byte Tink header, its nonce prefix and segment-0 length)."""
    ad = _bytes(v, "ad") if ad is None else ad
    tink_header = _bytes(v, "ciphertext")[: _header_len(v)]
    seg_size = v["ciphertext_segment_size"]
    segments = _Segments(_bytes(v, "key"), tink_header, ad, seg_size, decrypt, first_index)
    derived = _derived_key(v, ad)
    segments._derived, segments._aead = derived, AESGCM(derived)
    prefix = tink_header[1 + v["derived_key_size"] :]
    full = seg_size if decrypt else seg_size - TAG_LEN
    if len(tink_header) == _header.TINK_HEADER_LEN:  # our header length: our own values must be right
        assert segments._prefix == prefix
        assert segments._want == (full - len(tink_header) if first_index == 0 else full)
    else:
        segments._prefix = prefix
        if first_index == 0:
            segments._want = full - len(tink_header)
    return segments


def _run(segments: _Segments, data: bytes, chunk: int, decrypt: bool) -> bytes:
    """Push ``data`` in chunks, popping as we go, then the last segment."""
    pop = segments.pop_opened if decrypt else segments.pop_sealed
    out = []
    for i in range(0, len(data), chunk):
        segments.push(data[i : i + chunk])
        out += iter(pop, None)
    out.append(segments.last_opened() if decrypt else segments.last_sealed())
    return b"".join(out)


def _open(v: dict, body: bytes, chunk: int = 1 << 20, ad: bytes | None = None) -> bytes:
    return _run(_segments(v, True, ad=ad), body, chunk, True)


def _bodies(v: dict) -> list[bytes]:
    """The vector's ciphertext segments, cut as Tink cuts them."""
    ct, seg = _bytes(v, "ciphertext"), v["ciphertext_segment_size"]
    cuts = [_header_len(v), seg]
    while cuts[-1] < len(ct):
        cuts.append(min(cuts[-1] + seg, len(ct)))
    return [ct[a:b] for a, b in itertools.pairwise(cuts)]


def test_the_vectors_are_tink_javas_eight():
    src = DOC["source"]
    assert src["repository"] == "https://github.com/tink-crypto/tink-java"
    assert src["path"].endswith("/AesGcmHkdfStreamingTestUtil.java") and len(src["commit"]) == 40
    assert len(VECTORS) == 8
    three = VECTORS[0]
    assert three["name"] == "vector0_three_segments" and len(_bodies(three)) == 3
    assert [len(b) for b in _bodies(three)] == [40, 64, 34]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_py_reads_the_copied_vectors(v):
    """The copy is faithful: Google's tink package decrypts each vector as tink-java made it."""
    primitive = tink_streaming(_bytes(v, "key"), v["ciphertext_segment_size"], v["derived_key_size"], v["hkdf_hash"])
    with primitive.new_decrypting_stream(io.BytesIO(_bytes(v, "ciphertext")), _bytes(v, "ad")) as stream:
        assert stream.read() == _bytes(v, "plaintext")


@pytest.mark.parametrize("chunk", [1, 7, 16, 1 << 20])
@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_java_vector_opens_byte_exact(v, chunk):
    body = _bytes(v, "ciphertext")[_header_len(v) :]
    assert _open(v, body, chunk) == _bytes(v, "plaintext")


@pytest.mark.parametrize("chunk", [1, 7, 16, 1 << 20])
@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_java_vector_seals_byte_exact(v, chunk):
    """Sealing the plaintext under the vector's salt and nonce prefix gives tink-java's bytes."""
    ct = _bytes(v, "ciphertext")
    sealed = _run(_segments(v, False), _bytes(v, "plaintext"), chunk, False)
    assert ct[: _header_len(v)] + sealed == ct


def test_three_segment_vector_opens_one_segment_at_a_time():
    """The range-read path: a segment opened alone at its index, inner or final as it is in the stream."""
    v = VECTORS[0]
    pt = _bytes(v, "plaintext")
    s0, s1, s2 = _bodies(v)
    opened = []
    for index, body, final in ((0, s0, False), (1, s1, False), (2, s2, True)):
        segments = _segments(v, True, first_index=index)
        segments.push(body)
        opened.append(segments.last_opened() if final else segments.last_opened_inner())
    assert b"".join(opened) == pt
    for index, body, final in ((1, s1, True), (2, s2, False), (0, s1, False), (1, s0, False), (1, s2, True)):
        segments = _segments(v, True, first_index=index)
        segments.push(body)
        with pytest.raises(DecryptionFailed):
            segments.last_opened() if final else segments.last_opened_inner()


def _tampered(v: dict) -> list[tuple[str, bytes]]:
    """tink-java's ``StreamingTestUtil.testModifiedCiphertext`` list on the
    vector's segments (its header is the test's input, not ours to parse:
    salt and nonce prefix flips are covered through the key and nonce)."""
    body = _bytes(v, "ciphertext")[_header_len(v) :]
    seg = v["ciphertext_segment_size"]
    bodies = _bodies(v)
    out = [(f"truncate {n}", body[:n]) for n in range(len(body))]
    out += [(f"append {n}", body + bytes(n)) for n in (1, seg - len(body) % seg, seg)]
    out += [
        (f"flip {i}.{b}", body[:i] + bytes([body[i] ^ 1 << b]) + body[i + 1 :])
        for i in range(len(body))
        for b in range(8)
    ]
    for i in range(len(bodies)):
        out.append((f"delete {i}", b"".join(bodies[:i] + bodies[i + 1 :])))
        out.append((f"duplicate {i}", b"".join(bodies[: i + 1] + bodies[i:])))
    for i in range(len(bodies) - 1):
        out.append((f"swap {i}", b"".join(bodies[:i] + [bodies[i + 1], bodies[i]] + bodies[i + 2 :])))
    return [(name, data) for name, data in out if data != body]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_java_vector_tampered_fails(v):
    for name, body in _tampered(v):
        for chunk in (5, 1 << 20):
            with pytest.raises(DecryptionFailed):
                _open(v, body, chunk)
                pytest.fail(name)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_java_vector_salt_or_nonce_prefix_changed_fails(v):
    ct, size = _bytes(v, "ciphertext"), _header_len(v)
    for i in range(1, size):
        bad = dict(v, ciphertext_hex=(ct[:i] + bytes([ct[i] ^ 1]) + ct[i + 1 :]).hex())
        with pytest.raises(DecryptionFailed):
            _open(bad, ct[size:])


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_tink_java_vector_other_associated_data_fails(v):
    ad = _bytes(v, "ad")
    body = _bytes(v, "ciphertext")[_header_len(v) :]
    others = [ad[:i] + bytes([ad[i] ^ 1]) + ad[i + 1 :] for i in range(len(ad))] + [ad + b"\0", ad[:-1]]
    for other in others:
        if other != ad:
            with pytest.raises(DecryptionFailed):
                _open(v, body, ad=other)
