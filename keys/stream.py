"""Streaming envelope encryption: our header, then a Tink AES-GCM-HKDF stream.

Theory of operation
-------------------
An object is encrypted under its customer's data key (DEK, 32 bytes) in
Tink's AES-GCM-HKDF streaming format with Tink's ``AES256_GCM_HKDF_1MB``
parameters, so the ``tink`` package can decrypt what we write and we can
decrypt what it writes (``tests/unit/keys/test_stream_tink.py``):

* per-object key = HKDF-SHA256(ikm=DEK, salt=random 32 bytes,
  info=associated data), 32 bytes;
* the plaintext is cut into segments; each is sealed with AES-256-GCM under
  nonce = 7-byte random prefix ‖ segment index (u32 big-endian) ‖ last flag
  (0x01 on the final segment, else 0x00), with no GCM associated data (the
  associated data already went into the key);
* every ciphertext segment is S bytes (plaintext S-16 and a 16-byte tag),
  except segment 0, which is 40 bytes shorter (the Tink header shares it),
  and the last, which may be shorter (an empty plaintext is one last
  segment holding only a tag). A plaintext that fills its last segment
  exactly is *not* followed by an empty segment (Tink does the same).

In front of the Tink stream we put our own header naming the DEK and
committing to it. Layout of a stored object, ``n`` = DEK id length. This is
the format old replicas must stay readable in; change it only with a new
version byte:

====== ==== ==============================================================
offset size field
====== ==== ==============================================================
0      4    magic ``b"RPXE"``
4      1    format version, ``0x01``
5      4    ciphertext segment size S, u32 big-endian; ``1 MiB`` (1048576)
            unless a caller asked otherwise; a reader accepts 57 ≤ S ≤ 1 MiB
9      1    n, length of the DEK id, 1..64
10     n    DEK id, printable ASCII (0x21..0x7E)
10+n   32   key commitment C (below)
42+n   1    Tink header length, always ``0x28`` (40)
43+n   32   Tink HKDF salt (random)
75+n   7    Tink nonce prefix (random)
82+n   …    Tink segments: segment 0 has S-40 bytes, then S each, the
            last 16..S (tag included)
====== ==== ==============================================================

C = HMAC-SHA256(key = DEK, message = label ‖ bytes[0 : 10+n] ‖
bytes[42+n : 82+n] ‖ associated data), label =
``b"replicator/keys/stream key commitment v1\\x00"``.

Why a commitment: AES-GCM is not key-committing. Whoever knows two keys can
craft one ciphertext whose tags verify under both, with different plaintexts
("invisible salamanders"). C is collision-resistant in the key (HMAC with a
32-byte key), so a ciphertext opens under exactly one DEK, as the AWS
Encryption SDK's committing suites guarantee. It is checked, in constant
time, before any segment is decrypted.

Why C binds the associated data too: here the associated data is not a side
input to GCM but the HKDF ``info`` that *chooses the GCM key*. A commitment
to the DEK alone would leave two ADs = two GCM keys, and someone holding the
DEK could make one stored object that decrypts to different plaintexts under
two object identities. Binding the AD makes the ciphertext commit to the
whole context (DEK, AD), so it has exactly one opening. It costs nothing
(the reader has the AD before it starts) and makes a wrong AD fail at the
header. C also covers every other header byte (segment size, DEK id, salt,
nonce prefix), so no header byte can be changed without failing.

Why S is in the header: it lets tests and the golden vector exercise many
segments in a few KB, and lets a later writer change it without a new
version. The reader caps it at 1 MiB so a hostile header cannot make it
buffer more.

Failure: every way a ciphertext can be wrong (truncated anywhere, a segment
dropped, added or moved, a bit flipped, wrong key, AD, DEK id or
commitment) raises ``DecryptionFailed("Decryption failed.")`` and nothing
more. A segment's plaintext is released only after its tag verifies, and
the last-flag in the nonce makes a cut at a segment boundary fail. A
streaming caller may thus already hold verified plaintext of earlier
segments when a later one fails: it must treat the failure as fatal for the
whole object (abort the response; never keep a partial body).

Memory and speed: the encryptor holds at most one segment of input (as
views of the caller's chunks, never copies) plus the chunk being read; the
decryptor holds one ciphertext segment, its plaintext and one chunk. A
segment lying inside one chunk goes through one-shot ``AESGCM`` on a view
of it; one straddling chunks goes through incremental GCM written with
``update_into`` into its output (``keys._segments``). Either way a segment comes
out as one ``bytes``, handed on at once and not referenced after, so each
1 MiB buffer can be freed, and reused while still in cache, before the
next is made. Per segment that is raw ``AESGCM``'s work; the fixed cost per
object (HMACs, random salt, key setup, the last short segment) is kept
small, and ``bench/crypto.py`` measures both against raw AES-GCM. The
HMACs go through ``keys._fast_hmac`` (equal to ``hmac.digest``, cheaper on
these short inputs).
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from keys import _header
from keys._segments import SEGMENT_SIZE, TAG_LEN, DecryptionFailed, Opener, Sealer, own

__all__ = [
    "SEGMENT_SIZE",
    "DecryptionFailed",
    "KeyLookup",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "object_ad",
]

KeyLookup = Callable[[str], "bytes | Awaitable[bytes]"]
"""Maps a DEK id read from a header to the key (e.g. ``provider.get_dek``)."""


def object_ad(customer: str, data_class: str, name: str, version: str) -> bytes:
    """Associated data naming one stored object: each field as UTF-8 after a
    4-byte big-endian length, so no two field tuples encode alike."""
    out = bytearray()
    for field in (customer, data_class, name, version):
        if not isinstance(field, str):
            raise TypeError("object_ad fields must be str")
        raw = field.encode("utf-8")
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def ciphertext_size(plaintext_size: int, dek_id: str, segment_size: int = SEGMENT_SIZE) -> int:
    """Exact length of ``encrypt_*``'s output for a plaintext of this size."""
    if plaintext_size < 0:
        raise ValueError("plaintext_size must be >= 0")
    first = segment_size - _header.TINK_HEADER_LEN - TAG_LEN
    rest = max(0, plaintext_size - first)
    segments = 1 + -(-rest // (segment_size - TAG_LEN))
    return _header.size(dek_id) + plaintext_size + segments * TAG_LEN


# ----- the API ---------------------------------------------------------------
#
# The loops below drop each piece (and chunk) as soon as it is handed on, so
# that no buffer outlives its use here.


async def encrypt_stream(
    chunks: AsyncIterable[bytes], key: bytes, dek_id: str, associated_data: bytes, *, segment_size: int = SEGMENT_SIZE
) -> AsyncIterator[bytes]:
    """Encrypt an async stream of plaintext chunks (any sizes) under ``key``
    (the DEK named ``dek_id``); yields ciphertext chunks. Memory stays at
    about one segment plus one input chunk."""
    sealer = Sealer(key, dek_id, associated_data, segment_size=segment_size)
    push, pop = sealer._segments.push, sealer.pop
    yield sealer.header
    async for chunk in chunks:
        push(chunk if type(chunk) is bytes else own(chunk))
        del chunk
        while (piece := pop()) is not None:
            yield piece
            del piece
    yield sealer.last()


async def decrypt_stream(
    chunks: AsyncIterable[bytes], key: bytes | KeyLookup, associated_data: bytes
) -> AsyncIterator[bytes]:
    """Decrypt an async stream of ciphertext chunks (any sizes); yields
    plaintext, each segment only after its tag verifies.

    ``key`` is the DEK, or a lookup called with the DEK id from the header
    (sync or async; its own exceptions, e.g. ``KeyDestroyed``, propagate).
    A bad ciphertext raises ``DecryptionFailed``, possibly after earlier
    segments were yielded: the caller must then discard the whole object.
    """
    opener = Opener(associated_data)
    chunks = aiter(chunks)
    async for chunk in chunks:  # until the header is whole
        header = opener.feed_header(chunk)
        if header is None:
            continue
        del chunk
        if callable(key):
            found = key(header.dek_id)
            opener.start(await found if inspect.isawaitable(found) else found)
        else:
            opener.start(key)
        break
    else:
        raise DecryptionFailed()  # the stream ended inside the header
    assert opener._segments is not None  # start() made them
    push, pop = opener._segments.push, opener.pop
    while (piece := pop()) is not None:
        yield piece
        del piece
    async for chunk in chunks:  # the same iterator, on from the chunk after the header
        push(chunk if type(chunk) is bytes else own(chunk))
        del chunk
        while (piece := pop()) is not None:
            yield piece
            del piece
    yield opener.last()


def encrypt_bytes(
    plaintext: bytes, key: bytes, dek_id: str, associated_data: bytes, *, segment_size: int = SEGMENT_SIZE
) -> bytes:
    """``encrypt_stream`` for a whole in-memory plaintext."""
    sealer = Sealer(key, dek_id, associated_data, segment_size=segment_size)
    return b"".join([sealer.header, *sealer.update(plaintext), sealer.last()])


def decrypt_bytes(ciphertext: bytes, key: bytes | Callable[[str], bytes], associated_data: bytes) -> bytes:
    """``decrypt_stream`` for a whole in-memory ciphertext (sync lookup only)."""
    opener = Opener(associated_data)
    header = opener.feed_header(ciphertext)
    if header is None:
        raise DecryptionFailed()
    opener.start(key(header.dek_id) if callable(key) else key)
    return b"".join([*iter(opener.pop, None), opener.last()])
