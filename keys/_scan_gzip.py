"""A gzip stream (RFC 1952) decoded for the SIN scan: every member, into one child stream.

Members one after another are one content (``cat a.gz b.gz`` is a gzip of both), so a SIN split
across two members is found. Bytes after the last member that are not another member (the zero
padding some tools add) are left alone: they were scanned as they are. A compression other than
deflate, or a stream that does not inflate, is unscannable; a stream cut short is scanned as far
as it goes.
"""

from __future__ import annotations

import zlib

from keys._scan_base import Budget, Inflater, Sink

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS


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
                if len(head) < len(GZIP_MAGIC):
                    self._between = head
                    return
                self._between = b""
                if not head.startswith(GZIP_MAGIC):
                    self._done = True  # trailing bytes, not a member
                    return
                self._inflater = Inflater(self._budget, _GZIP_WBITS, self._child)
                data = head
            try:
                rest = self._inflater.feed(data)
            except zlib.error:
                self._budget.unscannable("a gzip member does not inflate (an unknown compression, or damaged)")
                self._done = True
                return
            if rest is None:
                return
            self._inflater = None
            data = rest

    def finish(self) -> None:
        self._child.finish()
