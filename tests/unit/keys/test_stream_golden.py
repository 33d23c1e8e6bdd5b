"""Golden vectors: stored ciphertexts that every future version must read.

``golden/stream_v1.json`` was written once by this module
(``python -m tests.unit.keys.test_stream_golden``, which refuses to overwrite
it). Never regenerate it to make a test pass: a failure here means replicas
already stored in the clouds would become unreadable.

Each vector is checked three ways: ``keys.stream`` decrypts it; an
independent decoder written from the byte table in ``keys/stream.py`` (plain
HMAC, HKDF and one-shot AESGCM per segment, as tink-py's
``test_ciphertext_wire_format`` does) decrypts it; and re-encrypting the
plaintext with the stored salt and nonce prefix gives the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import struct
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys._segments import Sealer
from keys.stream import decrypt_bytes, object_ad

GOLDEN = Path(__file__).parent / "golden" / "stream_v1.json"


def seeded_plaintext(seed: str, size: int) -> bytes:
    """SHA-256(seed ‖ u32be(i)) for i = 0, 1, …, concatenated, cut to size."""
    blocks = (hashlib.sha256(seed.encode() + struct.pack(">I", i)).digest() for i in range(-(-size // 32)))
    return b"".join(blocks)[:size]


def _plaintext(v: dict) -> bytes:
    return (
        bytes.fromhex(v["plaintext_hex"])
        if "plaintext_hex" in v
        else seeded_plaintext(v["plaintext_seed"], v["plaintext_size"])
    )


def _ad(v: dict) -> bytes:
    ad = bytes.fromhex(v["ad_hex"])
    assert ad == object_ad(*v["ad_fields"])
    return ad


def _encrypt(v: dict, plaintext: bytes) -> bytes:
    randomness = iter([bytes.fromhex(v["salt_hex"]), bytes.fromhex(v["nonce_prefix_hex"])])
    sealer = Sealer(
        bytes.fromhex(v["key_hex"]),
        v["dek_id"],
        _ad(v),
        segment_size=v["segment_size"],
        urandom=lambda n: next(randomness),
    )
    return b"".join([sealer.header, *sealer.update(plaintext), *sealer.finalize()])


def independent_decrypt(ct: bytes, key: bytes, ad: bytes) -> tuple[str, int, bytes]:
    """Decode the v1 layout from its byte table alone; returns (DEK id,
    segment size, plaintext). Asserts instead of raising nicely."""
    magic, version, seg, n = struct.unpack_from(">4sBIB", ct)
    assert (magic, version) == (b"RPXE", 1)
    dek_id = ct[10 : 10 + n].decode("ascii")
    commitment, tink = ct[10 + n : 42 + n], ct[42 + n : 82 + n]
    label = b"replicator/keys/stream key commitment v1\x00"
    assert hmac.compare_digest(commitment, hmac.new(key, label + ct[: 10 + n] + tink + ad, hashlib.sha256).digest())
    assert tink[0] == 40
    salt, prefix = tink[1:33], tink[33:40]
    aes = AESGCM(HKDF(hashes.SHA256(), 32, salt, ad).derive(key))
    body = ct[82 + n :]
    bounds = [0, seg - 40]
    while bounds[-1] < len(body):
        bounds.append(min(bounds[-1] + seg, len(body)))
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    out = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        out.append(aes.decrypt(prefix + struct.pack(">IB", i, last), piece, None))
    return dek_id, seg, b"".join(out)


def _vectors() -> list[dict]:
    if not GOLDEN.exists():  # only while writing it; the coverage test then fails loudly
        return []
    return json.loads(GOLDEN.read_text())["vectors"]


def _ciphertext(v: dict) -> bytes:
    if "ciphertext_hex" in v:
        return bytes.fromhex(v["ciphertext_hex"])
    # Stored compactly: rebuild, then prove the bytes are the stored ones.
    ct = _encrypt(v, _plaintext(v))
    assert hashlib.sha256(ct).hexdigest() == v["ciphertext_sha256"]
    assert ct.startswith(bytes.fromhex(v["ciphertext_head_hex"]))
    assert ct.endswith(bytes.fromhex(v["ciphertext_tail_hex"]))
    return ct


@pytest.mark.parametrize("v", _vectors(), ids=lambda v: v["name"])
def test_golden_decrypts(v):
    ct, key, ad = _ciphertext(v), bytes.fromhex(v["key_hex"]), _ad(v)
    assert len(ct) == v["ciphertext_size"]
    assert decrypt_bytes(ct, key, ad) == _plaintext(v)
    assert decrypt_bytes(ct, lambda dek_id: key if dek_id == v["dek_id"] else b"", ad) == _plaintext(v)


@pytest.mark.parametrize("v", _vectors(), ids=lambda v: v["name"])
def test_golden_wire_format(v):
    ct, key, ad = _ciphertext(v), bytes.fromhex(v["key_hex"]), _ad(v)
    assert independent_decrypt(ct, key, ad) == (v["dek_id"], v["segment_size"], _plaintext(v))


@pytest.mark.parametrize("v", _vectors(), ids=lambda v: v["name"])
def test_golden_reencrypts_identically(v):
    assert _encrypt(v, _plaintext(v)) == _ciphertext(v)


def test_golden_covers_multi_segment_and_default_size():
    vs = {v["name"]: v for v in _vectors()}
    assert vs["multi_segment"]["segment_size"] == 256 and vs["multi_segment"]["plaintext_size"] > 1000
    assert vs["default_1mib_plus_5"]["segment_size"] == 1 << 20


# ----- writing the file (once) ---------------------------------------------------------


def _make() -> dict:
    def vector(name, key_seed, fields, dek_id, seg, size, seed, compact):
        v = {
            "name": name,
            "key_hex": hashlib.sha256(key_seed.encode()).hexdigest(),
            "ad_fields": fields,
            "ad_hex": object_ad(*fields).hex(),
            "dek_id": dek_id,
            "segment_size": seg,
            "salt_hex": hashlib.sha256(f"{name} salt".encode()).hexdigest(),
            "nonce_prefix_hex": hashlib.sha256(f"{name} prefix".encode()).hexdigest()[:14],
            "plaintext_size": size,
        }
        pt = seeded_plaintext(seed, size)
        if compact:
            v["plaintext_seed"] = seed
        else:
            v["plaintext_hex"] = pt.hex()
        ct = _encrypt(v, pt)
        v["ciphertext_size"] = len(ct)
        if compact:
            v.update(
                ciphertext_sha256=hashlib.sha256(ct).hexdigest(),
                ciphertext_head_hex=ct[:160].hex(),
                ciphertext_tail_hex=ct[-96:].hex(),
            )
        else:
            v["ciphertext_hex"] = ct.hex()
        return v

    return {
        "format": "keys.stream v1: RPXE header + Tink AES-GCM-HKDF streaming (AES-256, HKDF-SHA256)",
        "notes": [
            "key_hex is SHA-256 of a label; salt_hex and nonce_prefix_hex are the Tink header's random parts, fixed here.",
            "plaintext from plaintext_seed = SHA-256(seed UTF-8 || u32be(i)) for i = 0, 1, ... concatenated, cut to plaintext_size.",
            "a compact vector stores the SHA-256, head and tail of its ciphertext: re-encrypting rebuilds the bytes.",
            "Written once; never regenerate. See tests/unit/keys/test_stream_golden.py.",
        ],
        "vectors": [
            vector(
                "multi_segment",
                "golden key 1",
                ["cust-0001", "account", "profile/contact.json", "1712000000000-0-node-a"],
                "dek_GOLDEN1",
                256,
                1234,
                "golden plaintext 1",
                compact=False,
            ),
            vector(
                "empty", "golden key 2", ["c", "visit", "v", "1"], "dek_GOLDEN2", 1 << 20, 0, "unused", compact=False
            ),
            vector(
                "default_1mib_plus_5",
                "golden key 3",
                ["cust-0003", "project", "hosting/records.tar", "1712000000001-7-node-b"],
                "dek_GOLDEN3",
                1 << 20,
                (1 << 20) + 5,
                "golden plaintext 3",
                compact=True,
            ),
        ],
    }


if __name__ == "__main__":
    if GOLDEN.exists():
        sys.exit(f"{GOLDEN} exists; golden vectors are never regenerated")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(_make(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
