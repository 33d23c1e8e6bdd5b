"""A gzip stream (RFC 1952) decoded for the SIN scan: every member, into one child stream.

Members one after another are one content (``cat a.gz b.gz`` is a gzip of both), so a SIN split
across two members is found. Bytes after the last member that are not another member (the zero
padding some tools add) are left alone: they were scanned as they are. A member starts with the
header RFC 1952 defines (magic, deflate, no reserved flag): bytes that merely begin with the two
magic bytes (one random body in 65,536) are no gzip, and are scanned as they are like any other.
A member that does not inflate is unscannable; a stream cut short is scanned as far as it goes.
"""

from __future__ import annotations

import zlib

from keys._scan_base import Budget, Inflater, Sink

GZIP_MAGIC = b"\x1f\x8b"
_DEFLATE = 8  # CM: the only compression RFC 1952 defines
_RESERVED_FLAGS = 0xE0
_HEADER_START = 4  # magic, CM, FLG: enough to tell a member
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def is_gzip_member(head: bytes) -> bool:
    """Whether ``head`` starts a gzip member (RFC 1952: magic, deflate, reserved flags clear)."""
    return (
        len(head) >= _HEADER_START
        and head.startswith(GZIP_MAGIC)
        and head[2] == _DEFLATE
        and not head[3] & _RESERVED_FLAGS
    )


class GzipDecoder:
    def __init__(self, budget: Budget, child: Sink) -> None:
        self._budget = budget
        self._child = child
        self._inflater: Inflater | None = None
        self._between = b""  # bytes after a member, until they show whether another one starts
        self._done = False

    def feed(self, data: bytes | memoryview) -> None:
        while data and not self._done:
            if self._inflater is None:
                head = self._between + bytes(data)
                if len(head) < _HEADER_START:
                    self._between = head
                    return
                self._between = b""
                if not is_gzip_member(head):
                    self._done = True  # trailing bytes, not a member
                    return
                self._inflater = Inflater(self._budget, _GZIP_WBITS, self._child)
                data = head
            try:
                rest = self._inflater.feed(data)
            except zlib.error:
                self._budget.unscannable("a gzip member does not inflate (damaged)")
                self._done = True
                return
            if rest is None:
                return
            self._inflater = None
            data = rest

    def finish(self) -> None:
        self._child.finish()
