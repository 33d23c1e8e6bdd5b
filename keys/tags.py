"""Name tags and sealed names: what the clouds see instead of our names.

A customer tag and a name tag stand for a customer id and an object name in
region paths (the path itself, ``v1/<customer tag>/<class>/<name tag>``, is
``replicator.layout``'s). Both tags are HMAC-SHA256 under the deployment's 32-byte **index key**, truncated to 160
bits and written as lower-case base32 without padding (32 characters), so a
region's listing carries no customer id and no object name, yet the same
input always gives the same name (a read can find its object).

* The two kinds of tag are domain-separated (distinct labels), and every
  input is length-prefixed, so no customer/class/name split can collide with
  another.
* The name tag covers the customer too: the same name under two customers
  gives unrelated tags.
* **Tags must never change**: region names depend on them. The unit tests pin
  a fixed vector; changing the construction needs a new ``v2/`` prefix.

The real name and content type travel encrypted in object metadata:
``seal_name`` encrypts them with AES-256-GCM-SIV under a subkey (HKDF, so a
raw key is never used by two algorithms) of the customer's **name key**: a
key of its own, made with the customer's DEK, held beside it by the key
provider (``KeyProvider.get_name_key``) and destroyed with it. Listing
therefore opens names without ever holding a content key (a ``meta:`` scope
touches no DEK), and erasure makes names unreadable too. The nonce is random
(GCM-SIV: a repeated nonce leaks only equality, never the key) and associated
data binds the seal to its object (``name_ad``), so a sealed name copied onto
another object fails to open.

The first byte is the seal's version, which says which key opens it
(``sealed_version``):

* ``0x02`` (``NAME_KEY_SEAL``, every seal written now): the name key, HKDF
  info ``replicator/name-seal/v2``.
* ``0x01`` (``LEGACY_SEAL``, objects written before name keys existed): a
  subkey of the customer's **DEK** (HKDF info ``replicator/name-seal/v1``).
  Still opened, never written; a caller that must open one without a content
  key cannot, and says so (``replicator.paths.listing`` counts and audits each
  legacy open).

Both formats are pinned by golden vectors in ``tests/unit/keys/test_tags.py``.
"""

from __future__ import annotations

import base64
import os
import re
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from keys._fast_hmac import hmac_sha256

TAG_BYTES = 20  # 160 bits: collisions need ~2**80 names
TAG_CHARS = 32  # base32 of 20 bytes, no padding
_CUSTOMER_LABEL = b"replicator/tag/v1/customer"
_NAME_LABEL = b"replicator/tag/v1/name"
_SEAL_AD_LABEL = b"replicator/name-ad/v1"
LEGACY_SEAL = 1  # sealed under a subkey of the DEK: opened, never written
NAME_KEY_SEAL = 2  # sealed under a subkey of the customer's name key
_SEAL_INFO = {LEGACY_SEAL: b"replicator/name-seal/v1", NAME_KEY_SEAL: b"replicator/name-seal/v2"}
_NONCE_BYTES = 12
_TAG = re.compile(f"[a-z2-7]{{{TAG_CHARS}}}")
_NO_SALT = bytes(32)  # HKDF without a salt: HashLen zero bytes (RFC 5869, 2.2)
_B32_PAIRS = [a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"]
_B32_SHIFTS = tuple(range(TAG_BYTES * 8 - 10, -1, -10))  # 10 bits (two characters) at a time
CUSTOMER_TAGS_CACHED = 4096  # a request asks for its customer's tag several times


class SealedNameInvalid(ValueError):
    """A sealed name did not open (wrong key, wrong object, or tampered)."""


def _fields(*parts: bytes) -> bytes:
    # 4-byte big-endian length before each field: unambiguous concatenation.
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _text(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value.encode("utf-8")  # strict: lone surrogates are refused


def _b32(raw: bytes) -> str:
    """Lower-case base32 of a tag's 20 bytes, no padding (equal to ``base64.b32encode``'s, lowered)."""
    n = int.from_bytes(raw, "big")
    return "".join([_B32_PAIRS[(n >> s) & 0x3FF] for s in _B32_SHIFTS])


class Tagger:
    """Computes tags under one index key. Its ``repr`` hides the key."""

    __slots__ = ("_customer_tags", "_key")

    def __init__(self, index_key: bytes) -> None:
        if not isinstance(index_key, bytes) or len(index_key) != 32:
            raise ValueError("index key must be 32 bytes")
        self._key = index_key
        self._customer_tags: dict[str, str] = {}

    def __repr__(self) -> str:
        return "Tagger(index_key=<redacted>)"

    def _mac(self, message: bytes) -> str:
        return _b32(hmac_sha256(self._key, message)[:TAG_BYTES])

    def customer_tag(self, customer: str) -> str:
        tag = self._customer_tags.get(customer) if type(customer) is str else None
        if tag is None:
            tag = self._mac(_fields(_CUSTOMER_LABEL, _text(customer, "customer")))
            if len(self._customer_tags) >= CUSTOMER_TAGS_CACHED:
                self._customer_tags.clear()
            self._customer_tags[customer] = tag
        return tag

    def name_tag(self, customer: str, data_class: str, name: str) -> str:
        return self._mac(
            _fields(
                _NAME_LABEL,
                _text(customer, "customer"),
                _text(data_class, "data class"),
                _text(name, "name"),
            )
        )


def is_tag(value: object) -> bool:
    """Whether ``value`` looks like a tag (32 lower-case base32 characters)."""
    return isinstance(value, str) and _TAG.fullmatch(value) is not None


# ----- sealed names -----------------------------------------------------------


def name_ad(customer_tag: str, data_class: str, name_tag: str) -> bytes:
    """Associated data binding a sealed name to its object."""
    return _fields(
        _SEAL_AD_LABEL,
        _text(customer_tag, "customer tag"),
        _text(data_class, "data class"),
        _text(name_tag, "name tag"),
    )


def _seal_key(key: bytes, version: int) -> AESGCMSIV:
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("name key must be 32 bytes")
    # HKDF-SHA256 (RFC 5869) with no salt, 32 bytes out: one extract, one expand block. Written out
    # over the fast HMAC (a name opens on every read); equal to cryptography's HKDF (test_tags).
    prk = hmac_sha256(_NO_SALT, key)
    return AESGCMSIV(hmac_sha256(prk, _SEAL_INFO[version] + b"\x01"))


def seal_name(name_key: bytes, name: str, content_type: str, ad: bytes) -> str:
    """Encrypt ``name`` and ``content_type`` for object metadata, under the customer's name key.

    Returns URL-safe base64 without padding of
    ``0x02 ‖ nonce(12) ‖ AES-GCM-SIV(len-prefixed name ‖ content type)``;
    the overhead is 29 bytes before base64. ``ad`` is required; build it with
    ``name_ad``."""
    return _seal(name_key, NAME_KEY_SEAL, name, content_type, ad)


def _seal(key: bytes, version: int, name: str, content_type: str, ad: bytes) -> str:
    # ``version`` is a parameter so the tests can make the legacy seals old objects carry.
    if not isinstance(ad, bytes) or not ad:
        raise ValueError("associated data is required")
    if not isinstance(content_type, str):
        raise TypeError("content type must be a string")
    plaintext = _fields(_text(name, "name"), content_type.encode("utf-8"))
    nonce = os.urandom(_NONCE_BYTES)
    head = bytes([version])
    sealed = head + nonce + _seal_key(key, version).encrypt(nonce, plaintext, head + ad)
    return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def _raw(sealed: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    except (ValueError, TypeError):
        raise SealedNameInvalid("sealed name is not valid") from None
    if len(raw) < 1 + _NONCE_BYTES + 16 or raw[0] not in _SEAL_INFO:
        raise SealedNameInvalid("sealed name is not valid")
    return raw


def sealed_version(sealed: str) -> int:
    """Which key opens ``sealed``: ``NAME_KEY_SEAL`` (the name key) or ``LEGACY_SEAL`` (the DEK).
    Raises ``SealedNameInvalid`` for anything else."""
    return _raw(sealed)[0]


def open_name(key: bytes, sealed: str, ad: bytes) -> tuple[str, str]:
    """The ``(name, content_type)`` sealed by ``seal_name`` (``key``: the name key) or a legacy
    seal (``key``: the DEK; see ``sealed_version``). Raises ``SealedNameInvalid`` (saying only
    that) if it does not open."""
    raw = _raw(sealed)
    head, nonce, body = raw[:1], raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
    try:
        plaintext = _seal_key(key, raw[0]).decrypt(nonce, body, head + ad)
    except InvalidTag:
        raise SealedNameInvalid("sealed name is not valid") from None
    try:
        (n,) = struct.unpack_from(">I", plaintext, 0)
        name = plaintext[4 : 4 + n].decode("utf-8")
        (m,) = struct.unpack_from(">I", plaintext, 4 + n)
        content_type = plaintext[8 + n : 8 + n + m].decode("utf-8")
        if 8 + n + m != len(plaintext):
            raise ValueError
    except (struct.error, ValueError):
        raise SealedNameInvalid("sealed name is not valid") from None
    return name, content_type
