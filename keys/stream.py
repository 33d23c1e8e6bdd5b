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
of it; a segment straddling chunks goes through incremental GCM
(``Cipher(AES, GCM)``) piece by piece, so no segment is ever gathered into
a copy. On decrypt those pieces' plaintext stays in a private list until
the tag verifies. Output pieces are handed on as they are made (segment by
segment, also within one large chunk) and no reference to them is kept, so
each 1 MiB buffer can be freed, and reused while still in cache, before the
next is made. ``bench/crypto.py`` measures both against raw AESGCM: per
segment the stream is within ~5-10% of it; per object it adds a fixed
~10-20 µs (key commitment HMAC, HKDF = two HMACs, AES key schedule, the
last short segment, and on decrypt a GCM context for the segment that
straddles the header's chunk), which is what a 1 MiB object feels. The
HMACs go through ``_header.hmac_sha256`` (hashlib), about twice as fast
as ``hmac``/``cryptography``'s HKDF on these short inputs.
"""

from __future__ import annotations

import inspect
import io
import os
import struct
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import _header

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

SEGMENT_SIZE = 1 << 20          # Tink AES256_GCM_HKDF_1MB: ciphertext segment size
KEY_LEN = 32                    # AES-256 DEK and derived key
TAG_LEN = 16
SALT_LEN = 32
NONCE_PREFIX_LEN = 7
MIN_SEGMENT_SIZE = _header.TINK_HEADER_LEN + TAG_LEN + 1   # 57, as Tink: segment 0 holds a byte
MAX_SEGMENT_SIZE = SEGMENT_SIZE
_MAX_SEGMENTS = 1 << 32         # the nonce holds a 4-byte segment index
_INDEX = struct.Struct(">IB")
_TINK_HEADER_BYTE = bytes([_header.TINK_HEADER_LEN])

KeyLookup = Callable[[str], "bytes | Awaitable[bytes]"]
"""Maps a DEK id read from a header to the key (e.g. ``provider.get_dek``)."""


class DecryptionFailed(Exception):
    """The ciphertext is not valid under this key and associated data."""

    def __init__(self) -> None:
        super().__init__("Decryption failed.")

    def __reduce__(self):  # picklable despite the argument-less constructor
        return (DecryptionFailed, ())


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


# ----- the sans-IO core ------------------------------------------------------


class _Pieces:
    """A FIFO of byte pieces: views of the caller's chunks, cut without copying."""

    def __init__(self) -> None:
        self._queue: deque[memoryview] = deque()
        self.size = 0

    def append(self, data: bytes | memoryview) -> None:
        if data:
            self._queue.append(memoryview(data))
            self.size += len(data)

    def take(self, n: int) -> list[memoryview]:
        out = []
        self.size -= n
        while n:
            piece = self._queue[0]
            if len(piece) <= n:
                out.append(self._queue.popleft())
                n -= len(piece)
            else:
                out.append(piece[:n])
                self._queue[0] = piece[n:]
                n = 0
        return out


def _own(chunk: bytes | bytearray | memoryview) -> bytes:
    # bytes are immutable, so views of them stay valid; anything else may be
    # reused or resized by the caller after it hands it to us, so copy it.
    if isinstance(chunk, bytes):
        return chunk
    return memoryview(chunk).tobytes()


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes")


def _check_ad(associated_data: bytes) -> None:
    if not isinstance(associated_data, (bytes, bytearray)):
        raise TypeError("associated_data must be bytes")


class _Segments:
    """Tink's per-segment AES-GCM for one stream: derived key and nonces.

    ``seal`` and ``open`` take one segment as pieces (views of the caller's
    chunks, never gathered into a copy) and return it as one ``bytes``.
    One piece: one-shot ``AESGCM``, the cheapest call. Several: incremental
    GCM (a context costs ~2 µs) writing each piece with ``update_into``
    straight into the output, a fresh ``bytes`` of the segment's size
    (``_Output``). Not ``update()``: it returns a copy of a scratch buffer,
    and for a 1 MiB segment that extra copy (and the 2 MiB it keeps live
    for a moment, which on a 1 MiB-L2 CPU can also make malloc trim and
    re-fault the heap) cost more than the cipher in ``bench/crypto.py``.
    """

    __slots__ = ("_aead", "_aes", "_derived", "_prefix", "index")

    def __init__(self, key: bytes, tink_header: bytes, associated_data: bytes) -> None:
        salt = tink_header[1:1 + SALT_LEN]
        self._derived = _header.hkdf_sha256_32(key, salt, associated_data)
        self._aead = AESGCM(self._derived)
        self._aes: algorithms.AES | None = None  # made for the first segment that straddles chunks
        self._prefix = tink_header[1 + SALT_LEN:]
        self.index = 0

    def _nonce(self, last: bool) -> bytes:
        index = self.index
        if index >= _MAX_SEGMENTS:
            raise OverflowError("too many segments")
        self.index = index + 1
        return self._prefix + _INDEX.pack(index, last)

    def _gcm(self, nonce: bytes) -> Cipher:
        if self._aes is None:
            self._aes = algorithms.AES(self._derived)
        return Cipher(self._aes, modes.GCM(nonce))

    def seal(self, pieces: list[memoryview], size: int, last: bool) -> bytes:
        """Ciphertext (tag included) of one segment: ``size`` plaintext bytes
        given as pieces."""
        nonce = self._nonce(last)
        if len(pieces) <= 1:
            return self._aead.encrypt(nonce, pieces[0] if pieces else b"", None)
        enc = self._gcm(nonce).encryptor()
        out = _Output(size + TAG_LEN)
        for piece in pieces:
            out.at += enc.update_into(piece, out.view[out.at:])
        enc.finalize()
        out.view[out.at:] = enc.tag
        return out.value()

    def open(self, pieces: list[memoryview], size: int, last: bool) -> bytes:
        """Plaintext of one segment: ``size`` ciphertext bytes (tag included)
        given as pieces. Nothing of it exists outside this call unless the
        tag verifies."""
        try:
            nonce = self._nonce(last)
            if len(pieces) == 1:
                return self._aead.decrypt(nonce, pieces[0], None)
        except (InvalidTag, OverflowError):
            raise DecryptionFailed() from None
        body, tag = _split_tag(pieces)
        dec = self._gcm(nonce).decryptor()
        out = _Output(size - TAG_LEN)
        for piece in body:
            out.at += dec.update_into(piece, out.view[out.at:])
        try:
            dec.finalize_with_tag(tag)
        except InvalidTag:
            out.discard()  # the unverified plaintext goes now, not with the traceback
            raise DecryptionFailed() from None
        return out.value()


class _Output:
    """A new ``bytes`` of a given size, written through a view before anyone
    else sees it. ``BytesIO(bytes(n))`` owns the only reference to its
    buffer, so ``getbuffer()`` writes into it in place and, once that view
    is released, ``getvalue()`` returns that very object: no copy (CPython;
    elsewhere it copies, which is slower but as correct)."""

    __slots__ = ("_io", "at", "view")

    def __init__(self, size: int) -> None:
        self._io = io.BytesIO(bytes(size))
        self.view = self._io.getbuffer()
        self.at = 0

    def value(self) -> bytes:
        self.view.release()
        return self._io.getvalue()

    def discard(self) -> None:
        self.view.release()
        self._io.close()


def _split_tag(pieces: list[memoryview]) -> tuple[list[memoryview], bytes]:
    """(the pieces without the last TAG_LEN bytes, those bytes)."""
    last = pieces[-1]
    if len(last) > TAG_LEN:  # the usual case: the tag is within the last piece
        pieces[-1] = last[:-TAG_LEN]
        return pieces, last[-TAG_LEN:].tobytes()
    tag: list[memoryview] = []
    need = TAG_LEN
    while need:
        last = pieces.pop()
        if len(last) > need:
            pieces.append(last[:-need])
            last = last[-need:]
        tag.insert(0, last)
        need -= len(last)
    return pieces, b"".join(tag)


class _Sealer:
    """Encrypts a stream: ``header``, then ``update(chunk)``…, ``finalize()``,
    each returning an iterator of ciphertext pieces (consume it before the
    next call: pieces are produced as it is iterated).

    ``urandom`` exists for the golden-vector test, which fixes salt and nonce
    prefix; everything else must leave it alone.
    """

    def __init__(self, key: bytes, dek_id: str, associated_data: bytes, *,
                 segment_size: int = SEGMENT_SIZE,
                 urandom: Callable[[int], bytes] = os.urandom) -> None:
        _check_key(key)
        _check_ad(associated_data)
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")
        if urandom is os.urandom:  # one call for both
            tink_header = _TINK_HEADER_BYTE + urandom(SALT_LEN + NONCE_PREFIX_LEN)
        else:
            tink_header = _TINK_HEADER_BYTE + urandom(SALT_LEN) + urandom(NONCE_PREFIX_LEN)
        self.header = _header.build(key, dek_id, segment_size, tink_header, associated_data)
        self._segments = _Segments(key, tink_header, associated_data)
        self._pending = _Pieces()
        self._size = segment_size - TAG_LEN                       # plaintext per segment
        self._want = self._size - _header.TINK_HEADER_LEN         # segment 0 is shorter

    def update(self, chunk: bytes) -> Iterator[bytes]:
        self._pending.append(_own(chunk))
        return self._full_segments()

    def finalize(self) -> Iterator[bytes]:
        yield from self._full_segments()
        size = self._pending.size
        yield self._segments.seal(self._pending.take(size), size, True)

    def _full_segments(self) -> Iterator[bytes]:
        pending, segments = self._pending, self._segments
        # Seal only when more bytes follow: only then is this segment not the last.
        while pending.size > self._want:
            want = self._want
            self._want = self._size
            yield segments.seal(pending.take(want), want, False)


class _Opener:
    """Decrypts a stream: ``feed_header`` until it returns the header, then
    ``start(key)``, ``update(chunk)``…, ``finalize()``. Each of those three
    returns an iterator of verified plaintext pieces (consume it before the
    next call; a segment's pieces come out only once its tag verifies); every
    failure is ``DecryptionFailed``, raised by the call (bad header) or while
    iterating (bad segment)."""

    def __init__(self, associated_data: bytes) -> None:
        _check_ad(associated_data)
        self._ad = associated_data
        self._reader = _header.Reader(MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE)
        self.header: _header.Header | None = None
        self._segments: _Segments | None = None
        self._pending = _Pieces()

    def feed_header(self, chunk: bytes) -> _header.Header | None:
        try:
            self.header = self._reader.feed(_own(chunk))
        except ValueError:
            raise DecryptionFailed() from None
        return self.header

    def start(self, key: bytes) -> Iterator[bytes]:
        _check_key(key)
        assert self.header is not None
        if not self.header.verify(key, self._ad):
            raise DecryptionFailed()
        self._segments = _Segments(key, self.header.tink_header, self._ad)
        self._size = self.header.segment_size
        self._want = self._size - _header.TINK_HEADER_LEN
        self._pending.append(self._reader.rest)  # a view of a chunk we own already
        self._reader.rest = memoryview(b"")
        return self._full_segments()

    def update(self, chunk: bytes) -> Iterator[bytes]:
        self._pending.append(_own(chunk))
        return self._full_segments()

    def finalize(self) -> Iterator[bytes]:
        if self._segments is None or self._pending.size < TAG_LEN:
            raise DecryptionFailed()  # cut inside the header, or no last segment
        size = self._pending.size
        return iter((self._segments.open(self._pending.take(size), size, True),))

    def _full_segments(self) -> Iterator[bytes]:
        pending, segments = self._pending, self._segments
        assert segments is not None
        # A full segment followed by at least one more byte is not the last one.
        while pending.size > self._want:
            want = self._want
            self._want = self._size
            yield segments.open(pending.take(want), want, False)


# ----- the API ---------------------------------------------------------------
#
# The loops below drop each piece (and chunk) as soon as it is handed on, so
# that no buffer outlives its use here (see ``_Segments``).


async def encrypt_stream(chunks: AsyncIterable[bytes], key: bytes, dek_id: str,
                         associated_data: bytes, *,
                         segment_size: int = SEGMENT_SIZE) -> AsyncIterator[bytes]:
    """Encrypt an async stream of plaintext chunks (any sizes) under ``key``
    (the DEK named ``dek_id``); yields ciphertext chunks. Memory stays at
    about one segment plus one input chunk."""
    sealer = _Sealer(key, dek_id, associated_data, segment_size=segment_size)
    yield sealer.header
    async for chunk in chunks:
        pieces = sealer.update(chunk)
        del chunk
        for piece in pieces:
            yield piece
            del piece
    for piece in sealer.finalize():
        yield piece
        del piece


async def decrypt_stream(chunks: AsyncIterable[bytes], key: bytes | KeyLookup,
                         associated_data: bytes) -> AsyncIterator[bytes]:
    """Decrypt an async stream of ciphertext chunks (any sizes); yields
    plaintext, each segment only after its tag verifies.

    ``key`` is the DEK, or a lookup called with the DEK id from the header
    (sync or async; its own exceptions, e.g. ``KeyDestroyed``, propagate).
    A bad ciphertext raises ``DecryptionFailed``, possibly after earlier
    segments were yielded: the caller must then discard the whole object.
    """
    opener = _Opener(associated_data)
    async for chunk in chunks:
        if opener.header is not None:
            pieces = opener.update(chunk)
        elif opener.feed_header(chunk) is not None:
            found = key
            if callable(key):
                found = key(opener.header.dek_id)
                if inspect.isawaitable(found):
                    found = await found
            pieces = opener.start(found)
        else:
            continue
        del chunk
        for piece in pieces:
            yield piece
            del piece
    for piece in opener.finalize():
        yield piece
        del piece


def encrypt_bytes(plaintext: bytes, key: bytes, dek_id: str, associated_data: bytes, *,
                  segment_size: int = SEGMENT_SIZE) -> bytes:
    """``encrypt_stream`` for a whole in-memory plaintext."""
    sealer = _Sealer(key, dek_id, associated_data, segment_size=segment_size)
    return b"".join([sealer.header, *sealer.update(plaintext), *sealer.finalize()])


def decrypt_bytes(ciphertext: bytes, key: bytes | Callable[[str], bytes],
                  associated_data: bytes) -> bytes:
    """``decrypt_stream`` for a whole in-memory ciphertext (sync lookup only)."""
    opener = _Opener(associated_data)
    if opener.feed_header(ciphertext) is None:
        raise DecryptionFailed()
    out = opener.start(key(opener.header.dek_id) if callable(key) else key)
    return b"".join([*out, *opener.finalize()])
