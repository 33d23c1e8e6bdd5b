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
``update_into`` into its output (``_Segments``). Either way a segment comes
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

    def __reduce__(self) -> tuple[type[DecryptionFailed], tuple[()]]:  # picklable despite the argument-less constructor
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
#
# Per segment the stream runs the same AES as raw AESGCM (and zero-fills a
# fresh output as it does); what a 1 MiB object adds is per-object Python
# and key setup, each call of which runs with caches just flushed by a 1 MiB
# cipher pass (see "Memory and speed" above). Hence the shape: few calls per
# chunk (``push``, then ``pop`` until None), state in slots, the common
# cases (header and segment within one chunk) first.


def _own(chunk: bytes | bytearray | memoryview) -> bytes:
    # bytes are immutable, so views of them stay valid; anything else may be
    # reused or resized by the caller after it hands it to us, so copy it.
    if isinstance(chunk, bytes):
        return chunk
    return memoryview(chunk).tobytes()


def _check(key: bytes, associated_data: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes")
    if not isinstance(associated_data, (bytes, bytearray)):
        raise TypeError("associated_data must be bytes")


class _Segments:
    """Tink's segmenting and per-segment AES-GCM for one stream.

    Input is kept as a FIFO of pieces: views of the caller's chunks, cut
    without copying, ``size`` bytes in all. ``pop`` seals or opens the next
    segment once more bytes follow it (only then is it known not to be the
    last), ``last`` the final one. A segment within one piece goes through
    one-shot ``AESGCM``, the cheapest call. One that straddles pieces goes
    through incremental GCM (a context costs more to set up), each piece written
    with ``update_into`` straight into the output, a fresh ``bytes`` of the
    segment's size (``_output``): no segment is gathered into a copy, and
    every segment comes out as one ``bytes`` however the input was cut (one
    ``update()`` per piece gave sixteen outputs, and sixteen trips through
    the async generators, per segment fed in 64 KiB chunks). Nothing keeps
    an output after it is returned.
    """

    __slots__ = ("_aead", "_aes", "_derived", "_full", "_index", "_pieces", "_prefix", "_want", "size")

    def __init__(self, key: bytes, tink_header: bytes, associated_data: bytes,
                 segment_size: int, decrypt: bool) -> None:
        self._derived = _header.hkdf_sha256_32(key, tink_header[1:1 + SALT_LEN], associated_data)
        self._aead = AESGCM(self._derived)
        self._aes: algorithms.AES | None = None  # made for the first segment that straddles pieces
        self._prefix = tink_header[1 + SALT_LEN:]
        self._index = 0
        self._pieces: deque[memoryview] = deque()
        self.size = 0
        # Bytes taken per full segment: ciphertext (tag included) when
        # opening, plaintext when sealing; segment 0 is shorter by the header.
        self._full = segment_size if decrypt else segment_size - TAG_LEN
        self._want = self._full - _header.TINK_HEADER_LEN

    def push(self, data: bytes | memoryview) -> None:
        if data:
            self._pieces.append(memoryview(data))
            self.size += len(data)

    def _take(self, n: int) -> list[memoryview]:
        """The next ``n`` bytes as pieces (``pop_*`` and ``last_*`` serve a
        segment lying within one piece before calling this)."""
        pieces = self._pieces
        self.size -= n
        out = []
        while n:
            piece = pieces[0]
            if len(piece) <= n:
                out.append(pieces.popleft())
                n -= len(piece)
            else:
                out.append(piece[:n])
                pieces[0] = piece[n:]
                n = 0
        return out

    def _nonce(self, last: bool) -> bytes:
        index = self._index
        if index >= _MAX_SEGMENTS:
            raise OverflowError("too many segments")
        self._index = index + 1
        return self._prefix + _INDEX.pack(index, last)

    def _gcm(self, nonce: bytes) -> Cipher[modes.GCM]:
        if self._aes is None:
            self._aes = algorithms.AES(self._derived)
        return Cipher(self._aes, modes.GCM(nonce))

    # -- sealing

    def pop_sealed(self) -> bytes | None:
        """Ciphertext of the next full segment, if more bytes follow it."""
        want = self._want
        if self.size <= want:
            return None
        self._want = self._full
        first = self._pieces[0]
        if len(first) > want:  # the usual case: inside one chunk, which goes on after it
            self._pieces[0] = first[want:]
            self.size -= want
            return self._aead.encrypt(self._nonce(False), first[:want], None)
        return self._seal(self._take(want), want, False)

    def last_sealed(self) -> bytes:
        size = self.size
        if len(self._pieces) == 1:  # the usual case: all in one chunk
            self.size = 0
            return self._aead.encrypt(self._nonce(True), self._pieces.pop(), None)
        return self._seal(self._take(size), size, True)

    def _seal(self, pieces: list[memoryview], size: int, last: bool) -> bytes:
        nonce = self._nonce(last)
        if len(pieces) <= 1:
            return self._aead.encrypt(nonce, pieces[0] if pieces else b"", None)
        enc = self._gcm(nonce).encryptor()
        out, view = _output(size + TAG_LEN)
        at = 0
        for piece in pieces:
            at += enc.update_into(piece, view[at:])
        enc.finalize()
        view[at:] = enc.tag
        view.release()
        return out.getvalue()

    # -- opening

    def pop_opened(self) -> bytes | None:
        """Plaintext of the next full segment, if more bytes follow it."""
        want = self._want
        if self.size <= want:
            return None
        self._want = self._full
        first = self._pieces[0]
        if len(first) > want:  # the usual case: inside one chunk, which goes on after it
            self._pieces[0] = first[want:]
            self.size -= want
            try:
                return self._aead.decrypt(self._nonce(False), first[:want], None)
            except (InvalidTag, OverflowError):
                raise DecryptionFailed() from None
        return self._open(self._take(want), want, False)

    def last_opened(self) -> bytes:
        size = self.size
        if size < TAG_LEN:
            raise DecryptionFailed()  # no last segment
        return self._open(self._take(size), size, True)

    def _open(self, pieces: list[memoryview], size: int, last: bool) -> bytes:
        """Plaintext of one segment given as pieces (tag included). Nothing
        of it exists outside this call unless the tag verifies."""
        try:
            nonce = self._nonce(last)
            if len(pieces) == 1:
                return self._aead.decrypt(nonce, pieces[0], None)
        except (InvalidTag, OverflowError):
            raise DecryptionFailed() from None
        body, tag = _split_tag(pieces)
        dec = self._gcm(nonce).decryptor()
        out, view = _output(size - TAG_LEN)
        at = 0
        for piece in body:
            at += dec.update_into(piece, view[at:])
        view.release()
        try:
            dec.finalize_with_tag(tag)
        except InvalidTag:
            out.close()  # the unverified plaintext goes now, not with the traceback
            raise DecryptionFailed() from None
        return out.getvalue()


def _output(size: int) -> tuple[io.BytesIO, memoryview]:
    """A new ``bytes`` of ``size`` bytes, writable until the view is
    released, then ``getvalue()``. ``BytesIO(bytes(n))`` holds the only
    reference to that object, so ``getbuffer()`` exposes it in place and,
    once the view is released, ``getvalue()`` returns that very object: no
    copy (CPython; elsewhere it may copy, which is slower but as correct)."""
    out = io.BytesIO(bytes(size))
    return out, out.getbuffer()


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
    """Encrypts a stream: ``header``, then ``push(chunk)`` and ``pop()``
    until it returns None, …, and ``last()`` at the end. ``update`` and
    ``finalize`` wrap those as iterators (consume one before the next call).

    ``urandom`` exists for the golden-vector test, which fixes salt and nonce
    prefix; everything else must leave it alone.
    """

    __slots__ = ("_segments", "header", "last", "pop")

    def __init__(self, key: bytes, dek_id: str, associated_data: bytes, *,
                 segment_size: int = SEGMENT_SIZE,
                 urandom: Callable[[int], bytes] = os.urandom) -> None:
        _check(key, associated_data)
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")
        if urandom is os.urandom:  # one call for both
            tink_header = _TINK_HEADER_BYTE + urandom(SALT_LEN + NONCE_PREFIX_LEN)
        else:
            tink_header = _TINK_HEADER_BYTE + urandom(SALT_LEN) + urandom(NONCE_PREFIX_LEN)
        self.header = _header.build(key, dek_id, segment_size, tink_header, associated_data)
        self._segments = segments = _Segments(key, tink_header, associated_data, segment_size, False)
        self.pop = segments.pop_sealed
        self.last = segments.last_sealed

    @property
    def pending(self) -> int:
        """Plaintext bytes held (at most a segment's worth once ``pop`` is None)."""
        return self._segments.size

    def push(self, chunk: bytes) -> None:
        self._segments.push(chunk if type(chunk) is bytes else _own(chunk))
    def update(self, chunk: bytes) -> Iterator[bytes]:
        self.push(chunk)
        return iter(self.pop, None)

    def finalize(self) -> Iterator[bytes]:
        yield from iter(self.pop, None)
        yield self.last()


class _Opener:
    """Decrypts a stream: ``feed_header(chunk)`` until it returns the
    header, then ``start(key)``; ``push(chunk)`` and ``pop()`` until it
    returns None, …, and ``last()`` at the end. ``pop`` and ``last`` return
    verified plaintext, one segment each. Every failure is
    ``DecryptionFailed``."""

    __slots__ = ("_ad", "_reader", "_rest", "_segments", "header", "last", "pop")

    def __init__(self, associated_data: bytes) -> None:
        if not isinstance(associated_data, (bytes, bytearray)):
            raise TypeError("associated_data must be bytes")
        self._ad = associated_data
        self.header: _header.Header | None = None
        self._reader: _header.Reader | None = None   # only for a header cut across chunks
        self._rest: bytes | memoryview = b""
        self._segments: _Segments | None = None

    def feed_header(self, chunk: bytes) -> _header.Header | None:
        chunk = _own(chunk)
        try:
            if self._reader is None:
                header = _header.parse(chunk, MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE)
                if header is not None:
                    self._rest = memoryview(chunk)[header.size:]
                    self.header = header
                    return header
                self._reader = _header.Reader(MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE)
            self.header = self._reader.feed(chunk)
        except ValueError:
            raise DecryptionFailed() from None
        if self.header is not None:
            self._rest = self._reader.rest
            self._reader = None
        return self.header

    def start(self, key: bytes) -> None:
        _check(key, self._ad)
        header = self.header
        assert header is not None
        if not header.verify(key, self._ad):
            raise DecryptionFailed()
        self._segments = segments = _Segments(key, header.tink_header, self._ad,
                                              header.segment_size, True)
        self.pop = segments.pop_opened
        self.last = segments.last_opened
        segments.push(self._rest)  # a view of a chunk we own already
        self._rest = b""


# ----- the API ---------------------------------------------------------------
#
# The loops below drop each piece (and chunk) as soon as it is handed on, so
# that no buffer outlives its use here.


async def encrypt_stream(chunks: AsyncIterable[bytes], key: bytes, dek_id: str,
                         associated_data: bytes, *,
                         segment_size: int = SEGMENT_SIZE) -> AsyncIterator[bytes]:
    """Encrypt an async stream of plaintext chunks (any sizes) under ``key``
    (the DEK named ``dek_id``); yields ciphertext chunks. Memory stays at
    about one segment plus one input chunk."""
    sealer = _Sealer(key, dek_id, associated_data, segment_size=segment_size)
    push, pop = sealer._segments.push, sealer.pop
    yield sealer.header
    async for chunk in chunks:
        push(chunk if type(chunk) is bytes else _own(chunk))
        del chunk
        while (piece := pop()) is not None:
            yield piece
            del piece
    yield sealer.last()


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
        push(chunk if type(chunk) is bytes else _own(chunk))
        del chunk
        while (piece := pop()) is not None:
            yield piece
            del piece
    yield opener.last()


def encrypt_bytes(plaintext: bytes, key: bytes, dek_id: str, associated_data: bytes, *,
                  segment_size: int = SEGMENT_SIZE) -> bytes:
    """``encrypt_stream`` for a whole in-memory plaintext."""
    sealer = _Sealer(key, dek_id, associated_data, segment_size=segment_size)
    return b"".join([sealer.header, *sealer.update(plaintext), sealer.last()])


def decrypt_bytes(ciphertext: bytes, key: bytes | Callable[[str], bytes],
                  associated_data: bytes) -> bytes:
    """``decrypt_stream`` for a whole in-memory ciphertext (sync lookup only)."""
    opener = _Opener(associated_data)
    header = opener.feed_header(ciphertext)
    if header is None:
        raise DecryptionFailed()
    opener.start(key(header.dek_id) if callable(key) else key)
    return b"".join([*iter(opener.pop, None), opener.last()])
