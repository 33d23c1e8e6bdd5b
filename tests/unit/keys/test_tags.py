"""keys.tags: name tags (pinned: region names depend on them) and sealed names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from keys.tags import (
    LEGACY_SEAL,
    NAME_KEY_SEAL,
    SealedNameInvalid,
    Tagger,
    _seal,
    is_tag,
    name_ad,
    open_name,
    seal_name,
    sealed_version,
)

INDEX_KEY = bytes(range(32))
DEK = bytes(range(100, 132))
NAME_KEY = bytes(range(32, 64))
T = Tagger(INDEX_KEY)


def test_golden_vectors_never_change():
    # If this fails, every object in both regions becomes unfindable.
    assert T.customer_tag("alice") == "7jsye2kh2cvt2v4qqjxfzuyxsm4hyhz5"
    assert T.name_tag("alice", "account", "profile.json") == "szqjcia4t7ix72lcof3xrz5rqotmfvfh"


def test_construction_matches_its_description():
    # Independent re-derivation: HMAC-SHA256, length-prefixed, truncated to 20 bytes.
    msg = b"".join(struct.pack(">I", len(p)) + p for p in (b"replicator/tag/v1/customer", b"alice"))
    raw = hmac.new(INDEX_KEY, msg, hashlib.sha256).digest()[:20]
    assert T.customer_tag("alice") == base64.b32encode(raw).decode().rstrip("=").lower()


def test_tags_are_domain_separated_and_unambiguous():
    assert T.name_tag("a", "bc", "d") != T.name_tag("ab", "c", "d")
    assert T.name_tag("a", "b", "c/d") != T.name_tag("a", "b/c", "d")
    assert T.name_tag("alice", "account", "x") != T.name_tag("bob", "account", "x")
    assert T.customer_tag("alice") != T.name_tag("alice", "account", "alice")
    assert Tagger(bytes(32)).customer_tag("alice") != T.customer_tag("alice")


@given(st.text(min_size=1), st.text(min_size=1))
def test_tags_are_lowercase_base32_with_no_identifier(customer, name):
    try:
        ctag = T.customer_tag(customer)
        ntag = T.name_tag(customer, "visit", name)
    except ValueError:  # lone surrogates are refused
        return
    for tag in (ctag, ntag):
        assert is_tag(tag) and len(tag) == 32


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        T.customer_tag("")
    with pytest.raises(ValueError):
        Tagger(b"short")
    assert "redacted" in repr(T) and INDEX_KEY.hex() not in repr(T)


def test_is_tag():
    assert is_tag("a" * 32) and not is_tag("A" * 32) and not is_tag("a" * 31) and not is_tag(None)


# ----- sealed names -----------------------------------------------------------

AD = name_ad(T.customer_tag("alice"), "account", T.name_tag("alice", "account", "profile.json"))


def test_seal_round_trip_is_compact_url_safe_text():
    sealed = seal_name(DEK, "profile.json", "application/json", AD)
    assert open_name(DEK, sealed, AD) == ("profile.json", "application/json")
    assert set(sealed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert "profile" not in sealed
    # 1 + 12 + 16 bytes of overhead, 8 of lengths, then the text itself.
    assert len(base64.urlsafe_b64decode(sealed + "==")) == 29 + 8 + len("profile.json") + len("application/json")


def test_seal_is_randomised():
    assert seal_name(DEK, "a", "", AD) != seal_name(DEK, "a", "", AD)


@given(st.text(min_size=1, max_size=300), st.text(max_size=100))
def test_seal_round_trips_any_text(name, content_type):
    try:
        sealed = seal_name(DEK, name, content_type, AD)
    except UnicodeEncodeError:
        return
    assert open_name(DEK, sealed, AD) == (name, content_type)


def test_seal_fails_closed_on_any_mismatch():
    sealed = seal_name(DEK, "profile.json", "application/json", AD)
    other_ad = name_ad(T.customer_tag("bob"), "account", T.name_tag("bob", "account", "profile.json"))
    for dek, text, ad in [
        (bytes(32), sealed, AD),  # wrong key
        (DEK, sealed, other_ad),  # copied onto another object
        (DEK, sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1], AD),  # tampered
        (DEK, sealed[:10], AD),  # truncated
        (DEK, "!!!", AD),  # not base64
    ]:
        with pytest.raises(SealedNameInvalid, match="^sealed name is not valid$"):
            open_name(dek, text, ad)


def test_seal_requires_associated_data():
    with pytest.raises(ValueError):
        seal_name(DEK, "a", "b", b"")


# ----- the seal format: version 2 under the name key, version 1 (legacy) under the DEK -----------

# Made once by this code and pinned: old objects' metadata must keep opening.
GOLDEN_V2 = "ApCdKmH3LyFwhIVzue_Gc9fWP3XVppzgpysEcZ4Ew-dFfssBqywyME9G2K4X-9YrFwPP33Lg0sOwwbQyKHRgFT0"
GOLDEN_V1 = "AZj8GY1FjUSC0Px0g0n4ms2ZlUzI-vc7FAGVxA1MMSUwv9_S9DU-O7Obqn30WRM_OdvoBtYOw13EhkbAkXmyBJQ"


def test_golden_seals_open_under_their_own_key_only():
    assert sealed_version(GOLDEN_V2) == NAME_KEY_SEAL == 2
    assert open_name(NAME_KEY, GOLDEN_V2, AD) == ("profile.json", "application/json")
    assert sealed_version(GOLDEN_V1) == LEGACY_SEAL == 1
    assert open_name(DEK, GOLDEN_V1, AD) == ("profile.json", "application/json")
    for key, sealed in ((DEK, GOLDEN_V2), (NAME_KEY, GOLDEN_V1)):  # the other key opens neither
        with pytest.raises(SealedNameInvalid):
            open_name(key, sealed, AD)


def _independent_open(key: bytes, sealed: str, info: bytes) -> bytes:
    raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    sub = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
    return AESGCMSIV(sub).decrypt(raw[1:13], raw[13:], raw[:1] + AD)


def test_seal_format_matches_its_description():
    # Decoded without keys.tags: version byte, 12-byte nonce, AES-GCM-SIV under HKDF(key, info),
    # associated data = version byte || name_ad; plaintext = len-prefixed name || content type.
    want = struct.pack(">I", 12) + b"profile.json" + struct.pack(">I", 16) + b"application/json"
    assert _independent_open(NAME_KEY, GOLDEN_V2, b"replicator/name-seal/v2") == want
    assert _independent_open(DEK, GOLDEN_V1, b"replicator/name-seal/v1") == want
    fresh = seal_name(NAME_KEY, "profile.json", "application/json", AD)
    assert base64.urlsafe_b64decode(fresh + "==")[0] == 2  # every new seal is a name-key seal
    assert _independent_open(NAME_KEY, fresh, b"replicator/name-seal/v2") == want


def test_a_seal_is_bound_to_its_version():
    # Rewriting the version byte (to make a name-key seal pass as legacy, or back) fails to open.
    for sealed in (GOLDEN_V2, GOLDEN_V1):
        raw = bytearray(base64.urlsafe_b64decode(sealed + "=="))
        raw[0] = 3 - raw[0]
        forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        for k in (NAME_KEY, DEK):
            with pytest.raises(SealedNameInvalid):
                open_name(k, forged, AD)
    assert open_name(DEK, _seal(DEK, LEGACY_SEAL, "a", "b", AD), AD) == ("a", "b")


def test_unknown_seal_versions_are_refused():
    raw = bytearray(base64.urlsafe_b64decode(GOLDEN_V2 + "=="))
    for version in (0, 3, 255):
        raw[0] = version
        forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        with pytest.raises(SealedNameInvalid, match="^sealed name is not valid$"):
            sealed_version(forged)
        with pytest.raises(SealedNameInvalid, match="^sealed name is not valid$"):
            open_name(NAME_KEY, forged, AD)
