"""keys._fast_hmac: the HMAC written out over hashlib equals hmac.digest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keys import _fast_hmac


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_fast_equals_plain(key, message):
    assert _fast_hmac.hmac_sha256(key, message) == _fast_hmac.hmac_sha256_plain(key, message)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_fast_equals_plain_on_32_byte_keys(key, message):
    assert _fast_hmac.hmac_sha256(key, message) == _fast_hmac.hmac_sha256_plain(key, message)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_hmac_sha256_is_hmac(key, message):
    import hashlib
    import hmac

    assert _fast_hmac.hmac_sha256(key, message) == hmac.digest(key, message, hashlib.sha256)
    assert _fast_hmac.hmac_sha256(bytearray(key), message) == hmac.digest(key, message, hashlib.sha256)


def test_hmac_sha256_32_byte_key_fast_path():
    # Every key the stream uses is 32 bytes (DEK, salt, PRK): its own branch.
    import hashlib
    import hmac

    for key in (bytes(range(32)), bytearray(range(32)), b"\xff" * 32):
        for message in (b"", b"m", bytes(range(256)) * 3):
            assert _fast_hmac.hmac_sha256(key, message) == hmac.digest(bytes(key), message, hashlib.sha256)
