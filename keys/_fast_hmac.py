"""HMAC-SHA256: the standard call and a faster equal for short messages.

``hmac_sha256_plain`` is ``hmac.digest``. ``hmac_sha256`` gives the same
bytes, written out over hashlib (RFC 2104, as CPython's ``hmac`` module
does when it cannot use OpenSSL's): on the short messages of an object
header (the key commitment, HKDF extract and expand) the OpenSSL HMAC setup
behind ``hmac.digest`` costs more than the hashing. Every key the stream
uses is 32 bytes (DEK, salt, HKDF PRK), so that case skips the general key
handling. The two must be equal for every key and message
(``tests/unit/keys/test_fast_hmac.py``).
"""

from __future__ import annotations

import hashlib
import hmac

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_ZEROS_32 = bytes(32)
_SHA256 = hashlib.sha256


def hmac_sha256_plain(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256(key, message), the standard way."""
    return hmac.digest(key, message, "sha256")


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256(key, message), equal to ``hmac_sha256_plain``."""
    if len(key) == 32:
        key = key + _ZEROS_32
    else:
        if len(key) > 64:
            key = _SHA256(key).digest()
        key = bytes(key).ljust(64, b"\0")
    return _SHA256(key.translate(_OPAD) + _SHA256(key.translate(_IPAD) + message).digest()).digest()
