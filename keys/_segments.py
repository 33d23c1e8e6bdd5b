"""The sans-IO core of ``keys.stream``: Tink's segments, sealed and opened.

``Sealer`` and ``Opener`` turn chunks into ciphertext or plaintext segments
with no I/O; ``keys.stream`` documents the format and drives them from
iterables. Every failure of the ciphertext is ``DecryptionFailed``.
"""

from __future__ import annotations

import io
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import _header

SEGMENT_SIZE = 1 << 20  # Tink AES256_GCM_HKDF_1MB: ciphertext segment size
KEY_LEN = 32  # AES-256 DEK and derived key
TAG_LEN = 16
SALT_LEN = 32
NONCE_PREFIX_LEN = 7
MIN_SEGMENT_SIZE = _header.TINK_HEADER_LEN + TAG_LEN + 1  # 57, as Tink: segment 0 holds a byte
MAX_SEGMENT_SIZE = SEGMENT_SIZE
_MAX_SEGMENTS = 1 << 32  # the nonce holds a 4-byte segment index
_INDEX = struct.Struct(">IB")
_TINK_HEADER_BYTE = bytes([_header.TINK_HEADER_LEN])


class DecryptionFailed(Exception):
    """The ciphertext is not valid under this key and associated data."""

    def __init__(self) -> None:
        super().__init__("Decryption failed.")

    def __reduce__(self) -> tuple[type[DecryptionFailed], tuple[()]]:  # picklable despite the argument-less constructor
        return (DecryptionFailed, ())


# # Per segment the stream runs the same AES as raw AESGCM (and zero-fills a
# fresh output as it does); what a 1 MiB object adds is per-object Python
# and key setup, each call of which runs with caches just flushed by a 1 MiB
# cipher pass (see "Memory and speed" in ``keys.stream``). Hence the shape: few calls per
# chunk (``push``, then ``pop`` until None), state in slots, the common
# cases (header and segment within one chunk) first.


def own(chunk: bytes | bytearray | memoryview) -> bytes:
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

    def __init__(
        self,
        key: bytes,
        tink_header: bytes,
        associated_data: bytes,
        segment_size: int,
        decrypt: bool,
        first_index: int = 0,
    ) -> None:
        self._derived = _header.hkdf_sha256_32(key, tink_header[1 : 1 + SALT_LEN], associated_data)
        self._aead = AESGCM(self._derived)
        self._aes: algorithms.AES | None = None  # made for the first segment that straddles pieces
        self._prefix = tink_header[1 + SALT_LEN :]
        self._index = first_index  # a range read starts mid-stream (keys.ranges)
        self._pieces: deque[memoryview] = deque()
        self.size = 0
        # Bytes taken per full segment: ciphertext (tag included) when
        # opening, plaintext when sealing; segment 0 is shorter by the header.
        self._full = segment_size if decrypt else segment_size - TAG_LEN
        self._want = self._full - _header.TINK_HEADER_LEN if first_index == 0 else self._full

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

    def last_opened_inner(self) -> bytes:
        """Plaintext of the one full segment held, opened as *not* the
        stream's last: the end of a range that stops before the last segment."""
        size = self.size
        if size != self._want:
            raise DecryptionFailed()
        return self._open(self._take(size), size, False)

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


class Sealer:
    """Encrypts a stream: ``header``, then ``push(chunk)`` and ``pop()``
    until it returns None, …, and ``last()`` at the end. ``update`` and
    ``finalize`` wrap those as iterators (consume one before the next call).

    ``urandom`` exists for the golden-vector test, which fixes salt and nonce
    prefix; everything else must leave it alone.
    """

    __slots__ = ("_segments", "header", "last", "pop")

    def __init__(
        self,
        key: bytes,
        dek_id: str,
        associated_data: bytes,
        *,
        segment_size: int = SEGMENT_SIZE,
        urandom: Callable[[int], bytes] = os.urandom,
    ) -> None:
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
        self._segments.push(chunk if type(chunk) is bytes else own(chunk))

    def update(self, chunk: bytes) -> Iterator[bytes]:
        self.push(chunk)
        return iter(self.pop, None)

    def finalize(self) -> Iterator[bytes]:
        yield from iter(self.pop, None)
        yield self.last()


class Opener:
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
        self._reader: _header.Reader | None = None  # only for a header cut across chunks
        self._rest: bytes | memoryview = b""
        self._segments: _Segments | None = None

    def feed_header(self, chunk: bytes) -> _header.Header | None:
        chunk = own(chunk)
        try:
            if self._reader is None:
                header = _header.parse(chunk, MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE)
                if header is not None:
                    self._rest = memoryview(chunk)[header.size :]
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

    def start(self, key: bytes, first_index: int = 0) -> None:
        """Checks the key commitment, then opens segments from ``first_index``
        on (0 for a whole stream; a range read starts where its range does)."""
        _check(key, self._ad)
        header = self.header
        assert header is not None
        if not header.verify(key, self._ad):
            raise DecryptionFailed()
        self._segments = segments = _Segments(key, header.tink_header, self._ad, header.segment_size, True, first_index)
        self.pop = segments.pop_opened
        self.last = segments.last_opened
        segments.push(self._rest)  # a view of a chunk we own already
        self._rest = b""
