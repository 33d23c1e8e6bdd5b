"""Text for the SIN scan: the scanner as a sink, and UTF-16 found and transcoded.

The scanner reads ASCII digits, so UTF-16 text (``1\\x003\\x00…``) must become UTF-8 first.
UTF-16 is known by its byte-order mark, or, without one, by where its NULs fall: text that is
mostly ASCII has a NUL in the high byte of nearly every code unit (odd offsets for little-endian,
even ones for big-endian) and almost none in the other. Anything decoded wrongly only adds
scanning: the bytes themselves are always scanned as they are too.
"""

from __future__ import annotations

import codecs

from keys._scan_base import SinFound
from keys.sin import SinScanner

_MIN_UNITS = 4  # fewer code units say nothing about an encoding


class ScannerSink:
    """A stream scanned for a SIN as it is (raises ``SinFound``)."""

    __slots__ = ("_scanner",)

    def __init__(self) -> None:
        self._scanner = SinScanner()

    def feed(self, data: bytes | memoryview) -> None:
        if self._scanner.feed(data):
            raise SinFound

    def finish(self) -> None:
        if self._scanner.finish():
            raise SinFound


def utf16_encoding(head: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the first bytes of a stream look like UTF-16, else None."""
    if head.startswith(codecs.BOM_UTF16_LE) and not head.startswith(codecs.BOM_UTF32_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    units = len(head) // 2
    if units < _MIN_UNITS:
        return None
    even_nuls = head[0 : units * 2 : 2].count(0)
    odd_nuls = head[1 : units * 2 : 2].count(0)
    if odd_nuls * 10 >= units * 6 and even_nuls * 10 <= units:
        return "utf-16-le"
    if even_nuls * 10 >= units * 6 and odd_nuls * 10 <= units:
        return "utf-16-be"
    return None


class Utf16Decoder:
    """UTF-16 in, UTF-8 into ``out`` (a byte-order mark becomes U+FEFF, which no SIN touches)."""

    def __init__(self, encoding: str, out: ScannerSink) -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._out = out

    def feed(self, data: bytes | memoryview) -> None:
        text = self._decoder.decode(data)
        if text:
            self._out.feed(text.encode("utf-8", "surrogatepass"))

    def finish(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            self._out.feed(text.encode("utf-8", "surrogatepass"))
        self._out.finish()
