"""A zip archive read front to back for the SIN scan: each entry's content into a child stream.

Streaming, so the central directory at the end is never needed: each entry is read from its
local header (APPNOTE 4.3.7). A deflated entry ends where its deflate stream ends; a stored one
after its size, or, when its header defers the sizes to a data descriptor (bit 3, as zipfile
writes to an unseekable file), at the descriptor whose size matches what came before it. ZIP64
sizes are read from the header's extra field. An encrypted entry (bit 0) or another compression
(bzip2, LZMA, …) is unscannable; when the class accepts that, the entry is skipped if its size is
known, else the rest of the archive is (it cannot be found). The first central directory record
ends the reading. Entry names are never put in a message: they are the customer's.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from keys._scan_base import Budget, Inflater, Sink

ZIP_MAGIC = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_END_RECORDS = (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x05\x05")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature .. extra length: 30 bytes
_ENCRYPTED, _DEFERRED = 0x1, 0x8
_STORED, _DEFLATED = 0, 8
_UNKNOWN = 0xFFFFFFFF


class ZipDecoder:
    def __init__(self, budget: Budget, new_child: Callable[[], Sink]) -> None:
        self._budget = budget
        self._new_child = new_child
        self._buf = bytearray()
        self._step: Callable[[], bool] = self._header  # each returns False when it needs more bytes
        self._entries = 0
        # The entry being read:
        self._child: Sink | None = None
        self._inflater: Inflater | None = None
        self._left = 0  # stored bytes still to come (or to skip), when the size is known
        self._sent = 0  # stored bytes sent so far (a deferred-size entry)
        self._zip64 = False
        self._deferred = False

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data
        while self._buf and self._step():
            pass

    def finish(self) -> None:
        if self._child is not None:  # an archive cut short: its last entry as far as it goes
            self._child.finish()
            self._child = None

    # -- steps ------------------------------------------------------------------------------

    def _header(self) -> bool:
        buf = self._buf
        if len(buf) < 4:
            return False
        sig = bytes(buf[:4])
        if sig != ZIP_MAGIC:
            if sig not in _END_RECORDS:
                self._budget.unscannable(f"zip: unexpected bytes after entry {self._entries}")
            return self._stop()
        if len(buf) < _LOCAL.size:
            return False
        _, _, flags, method, _, _, _, csize, usize, name_len, extra_len = _LOCAL.unpack_from(buf)
        end = _LOCAL.size + name_len + extra_len
        if len(buf) < end:
            return False
        extra = bytes(buf[_LOCAL.size + name_len : end])
        del buf[:end]
        self._entries += 1
        self._zip64 = False
        if csize == _UNKNOWN or usize == _UNKNOWN:
            csize, self._zip64 = _zip64_size(extra, csize, usize), True
        self._deferred = bool(flags & _DEFERRED)
        size_known = not self._deferred or csize > 0
        n = self._entries
        if flags & _ENCRYPTED or method not in (_STORED, _DEFLATED):
            what = "is encrypted" if flags & _ENCRYPTED else f"uses compression method {method}"
            self._budget.unscannable(f"zip entry {n} {what}")
            if not size_known and method != _STORED:
                return self._stop()  # its end cannot be found: nor the entries after it
            self._left = csize
            self._step = self._skip if size_known else self._stored_deferred
            self._child = None if size_known else _Discard()
            self._sent = 0
            return True
        self._child = self._new_child()
        if method == _DEFLATED:
            self._inflater = Inflater(self._budget, -zlib.MAX_WBITS, self._child)
            self._step = self._deflated
        elif size_known:
            self._left, self._step = csize, self._stored
        else:
            self._sent, self._step = 0, self._stored_deferred
        return True

    def _deflated(self) -> bool:
        assert self._inflater is not None
        data, self._buf = bytes(self._buf), bytearray()
        try:
            rest = self._inflater.feed(data)
        except zlib.error:
            self._budget.unscannable(f"zip entry {self._entries} does not inflate")
            return self._stop()
        if rest is None:
            return False
        self._buf += rest
        self._inflater = None
        return self._entry_end()

    def _stored(self) -> bool:
        n = min(self._left, len(self._buf))
        if n:
            assert self._child is not None
            self._child.feed(bytes(self._buf[:n]))
            del self._buf[:n]
            self._left -= n
        return self._entry_end() if self._left == 0 else False

    def _skip(self) -> bool:
        n = min(self._left, len(self._buf))
        del self._buf[:n]
        self._left -= n
        if self._left:
            return False
        self._child = None
        return self._after_data()

    def _stored_deferred(self) -> bool:
        """Stored data of unknown size: up to the descriptor whose compressed size is what came before it."""
        assert self._child is not None
        buf, size = self._buf, 24 if self._zip64 else 16
        at = buf.find(_DESCRIPTOR)
        while at >= 0:
            if len(buf) < at + size:
                break  # the candidate's sizes have not arrived yet
            csize = struct.unpack_from("<Q" if self._zip64 else "<I", buf, at + 8)[0]
            if csize == self._sent + at:
                self._child.feed(bytes(buf[:at]))
                del buf[: at + size]
                return self._finish_entry()
            at = buf.find(_DESCRIPTOR, at + 1)
        # Everything before a possible descriptor start is data.
        keep = len(buf) - at if at >= 0 else min(len(buf), len(_DESCRIPTOR) - 1)
        n = len(buf) - keep
        if n:
            self._child.feed(bytes(buf[:n]))
            del buf[:n]
            self._sent += n
        return False

    def _descriptor(self) -> bool:
        buf = self._buf
        signed = buf[:4] == _DESCRIPTOR
        size = (4 if signed else 0) + (20 if self._zip64 else 12)
        if len(buf) < max(size, 4):
            return False
        del buf[:size]
        self._step = self._header
        return True

    # -- endings ----------------------------------------------------------------------------

    def _entry_end(self) -> bool:
        assert self._child is not None
        self._finish_child()
        return self._after_data()

    def _after_data(self) -> bool:
        self._step = self._descriptor if self._deferred else self._header
        return True

    def _finish_entry(self) -> bool:
        self._finish_child()
        self._step = self._header
        return True

    def _finish_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.finish()

    def _stop(self) -> bool:
        """Read no further: the rest of the body was scanned as it is."""
        self._finish_child()
        self._buf = bytearray()
        self._step = self._rest
        return False

    def _rest(self) -> bool:
        self._buf = bytearray()
        return False


class _Discard:
    """Where a skipped (unscannable) stored entry of unknown size goes."""

    def feed(self, data: bytes | memoryview) -> None:
        pass

    def finish(self) -> None:
        pass


def _zip64_size(extra: bytes, csize: int, usize: int) -> int:
    """The compressed size from a ZIP64 extra field (id 1: the sizes that are 0xFFFFFFFF, in order)."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == 1:
            fields = extra[at + 4 : at + 4 + length]
            values: list[int] = [struct.unpack_from("<Q", fields, i)[0] for i in range(0, len(fields) - 7, 8)]
            if usize == _UNKNOWN and values:
                values.pop(0)
            if csize == _UNKNOWN and values:
                return values[0]
            return csize
        at += 4 + length
    return csize
