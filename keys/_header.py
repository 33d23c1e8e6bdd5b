"""Our envelope header: the bytes in front of the Tink stream.

The byte layout, and why the commitment binds what it binds, is documented
in ``keys/stream.py``; this module only encodes, parses and MACs it. Parse
errors are plain ``ValueError``: ``keys.stream`` turns every one of them into
its single ``DecryptionFailed``.
"""

from __future__ import annotations

import hmac
import struct
from typing import NamedTuple

from keys._fast_hmac import hmac_sha256

MAGIC = b"RPXE"
VERSION = 1
COMMITMENT_LEN = 32
MAX_DEK_ID_LEN = 64
TINK_HEADER_LEN = 40  # 1-byte length (the value 40) + 32-byte salt + 7-byte nonce prefix

# magic, version, ciphertext segment size, DEK id length.
_FIXED = struct.Struct(">4sBIB")
_PRINTABLE = bytes(range(0x21, 0x7F))
# Domain separation: the DEK keys this HMAC and nothing else keyed by the DEK
# may ever MAC a message starting with this label.
_COMMIT_LABEL = b"replicator/keys/stream key commitment v1\x00"


def encode_dek_id(dek_id: str) -> bytes:
    """The DEK id as header bytes; ValueError unless 1..64 printable ASCII."""
    if not isinstance(dek_id, str):
        raise TypeError("dek_id must be a str")
    raw = dek_id.encode("ascii", "replace")  # non-ASCII becomes "?", refused below
    if not dek_id.isascii() or not 1 <= len(raw) <= MAX_DEK_ID_LEN or raw.translate(None, _PRINTABLE):
        raise ValueError(f"dek_id must be 1..{MAX_DEK_ID_LEN} printable ASCII characters")
    return raw


def hkdf_sha256_32(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with a 32-byte output: one expand block."""
    return hmac_sha256(hmac_sha256(salt, ikm), info + b"\x01")


def commitment(key: bytes, prefix: bytes, tink_header: bytes, associated_data: bytes) -> bytes:
    """HMAC-SHA256 under the DEK of everything before and after it in the
    header, then the associated data. ``prefix`` and ``tink_header`` have
    self-delimiting lengths, so the MAC input is unambiguous."""
    return hmac_sha256(key, b"".join((_COMMIT_LABEL, prefix, tink_header, associated_data)))


def build(key: bytes, dek_id: str, segment_size: int, tink_header: bytes, associated_data: bytes) -> bytes:
    """Our header followed by the Tink header: everything before segment 0."""
    raw_id = encode_dek_id(dek_id)
    prefix = _FIXED.pack(MAGIC, VERSION, segment_size, len(raw_id)) + raw_id
    return b"".join((prefix, commitment(key, prefix, tink_header, associated_data), tink_header))


MAX_SIZE = _FIXED.size + MAX_DEK_ID_LEN + COMMITMENT_LEN + TINK_HEADER_LEN


def size(dek_id: str) -> int:
    """Bytes before segment 0 (our header and the Tink header)."""
    return _FIXED.size + len(encode_dek_id(dek_id)) + COMMITMENT_LEN + TINK_HEADER_LEN


class Header(NamedTuple):
    prefix: bytes  # magic .. DEK id: the MACed bytes before the commitment
    dek_id: str
    segment_size: int
    commitment: bytes
    tink_header: bytes  # 40 bytes; its length byte already checked
    size: int  # bytes before segment 0 (our header and the Tink header)

    def verify(self, key: bytes, associated_data: bytes) -> bool:
        """True iff the commitment matches (constant-time comparison)."""
        expected = commitment(key, self.prefix, self.tink_header, associated_data)
        return hmac.compare_digest(expected, self.commitment)


def parse(data: bytes | bytearray | memoryview, min_segment: int, max_segment: int) -> Header | None:
    """The header at the start of ``data``, or None while ``data`` is too
    short to hold all of it; ValueError as soon as what is there is wrong."""
    if len(data) < _FIXED.size:
        return None
    magic, version, segment_size, id_len = _FIXED.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a version 1 envelope")
    if not min_segment <= segment_size <= max_segment:
        raise ValueError("segment size out of range")
    if not 1 <= id_len <= MAX_DEK_ID_LEN:
        raise ValueError("bad DEK id length")
    id_end = _FIXED.size + id_len
    end = id_end + COMMITMENT_LEN + TINK_HEADER_LEN
    if len(data) < end:
        return None
    buf = bytes(data[:end])
    raw_id = buf[_FIXED.size : id_end]
    if raw_id.translate(None, _PRINTABLE):
        raise ValueError("bad DEK id")
    if buf[end - TINK_HEADER_LEN] != TINK_HEADER_LEN:
        raise ValueError("bad Tink header length")
    return Header(
        buf[:id_end],
        raw_id.decode("ascii"),
        segment_size,
        buf[id_end : id_end + COMMITMENT_LEN],
        buf[end - TINK_HEADER_LEN :],
        end,
    )


class Reader:
    """Accumulates the first bytes of a ciphertext until the header is whole,
    for a header cut across chunks (``parse`` reads one in a single chunk).

    ``feed`` returns None while more bytes are needed, then the ``Header``;
    the bytes that followed it are in ``rest`` (a view, so a large chunk is
    not copied). At most ``MAX_SIZE`` bytes are buffered here.
    """

    def __init__(self, min_segment: int, max_segment: int) -> None:
        self._buf = bytearray()
        self._limits = (min_segment, max_segment)
        self.rest = memoryview(b"")

    def feed(self, data: bytes) -> Header | None:
        view = memoryview(data)
        before = len(self._buf)
        self._buf += view[: MAX_SIZE - before]
        header = parse(self._buf, *self._limits)
        if header is not None:
            # The header ends inside this chunk (else an earlier feed had it all).
            self.rest = view[header.size - before :]
            self._buf = bytearray()
        return header
