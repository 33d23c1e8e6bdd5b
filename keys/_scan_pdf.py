"""A PDF's streams decoded for the SIN scan: each ``/FlateDecode`` stream into a child stream.

Read front to back (no cross-reference table: it is at the end). Outside a stream, the last few
KiB are kept to read the dictionary before each ``stream`` keyword (from its ``N G obj``): its
``/Filter`` decides. ``/FlateDecode`` alone is inflated, and its end is where the deflate stream
ends (``/Length`` may be an indirect object, not yet read); ``[/ASCII85Decode /FlateDecode]`` (as
ReportLab writes) and ``/ASCII85Decode`` alone end at ASCII85's ``~>``. A stream with no filter,
an image codec alone (``/DCTDecode``, ``/JPXDecode``, ``/JBIG2Decode``, ``/CCITTFaxDecode``), or
an image whatever its filter (``/Subtype /Image``: pixels hold no text, and a mostly white page
inflates far past the expansion ratio) is skipped to ``endstream``, its bytes having been scanned
as they are, like the same image uploaded alone. Any other filter or chain (``/LZWDecode``,
``/ASCIIHexDecode``, ``/Crypt``, …), and a stream that does not decode (an encrypted PDF's), is
unscannable. Text drawn with a font's own glyph codes (hex strings of CIDs) or split by kerning
(``[(130) -20 (692)] TJ``) is not put back together: the scan sees the content stream's bytes.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from keys._scan_a85 import Ascii85Decoder
from keys._scan_base import Budget, Inflater, Sink

PDF_MAGIC = b"%PDF-"
_WINDOW = 4096  # bytes kept before a stream keyword: its dictionary
_STREAM = re.compile(rb"stream\r?\n")
_END = b"endstream"
_FILTER = re.compile(rb"/Filter\s*(/[^\s/\[\]<>()]+|\[([^\]]*)\])")
_NAME = re.compile(rb"/([^\s/\[\]<>()]+)")
_IMAGE_XOBJECT = re.compile(rb"/Subtype\s*/Image\b")
_FLATE = frozenset({b"FlateDecode", b"Fl"})
_A85 = frozenset({b"ASCII85Decode", b"A85"})
_IMAGES = frozenset({b"DCTDecode", b"DCT", b"JPXDecode", b"JBIG2Decode", b"CCITTFaxDecode", b"CCF"})


class PdfDecoder:
    def __init__(self, budget: Budget, new_child: Callable[[], Sink]) -> None:
        self._budget = budget
        self._new_child = new_child
        self._buf = bytearray()  # outside a stream: the window; skipping: the unsearched tail
        self._searched = 0  # outside: where the next keyword search starts
        self._inflater: Inflater | None = None
        self._a85: Ascii85Decoder | None = None
        self._child: Sink | None = None
        self._skipping = False
        self._streams = 0

    def feed(self, data: bytes | memoryview) -> None:
        while data:
            if self._a85 is not None:
                data = self._ascii85(data)
            elif self._inflater is not None:
                data = self._inflate(data)
            elif self._skipping:
                data = self._skip(data)
            else:
                data = self._outside(data)

    def finish(self) -> None:
        self._end_child()

    def _outside(self, data: bytes | memoryview) -> bytes:
        buf = self._buf
        buf += data
        at = self._searched
        while True:
            m = _STREAM.search(buf, at)
            if m is None:
                break
            if m.start() >= 3 and buf[m.start() - 3 : m.start()] == b"end":
                at = m.end()
                continue
            rest = bytes(buf[m.end() :])
            self._open(bytes(buf[: m.start()]))
            self._buf, self._searched = bytearray(), 0
            return rest
        if len(buf) > _WINDOW:
            del buf[: len(buf) - _WINDOW]
        self._searched = max(0, len(buf) - len(b"stream\r\n"))
        return b""

    def _open(self, before: bytes) -> None:
        """A stream starts: its filters, from the dictionary after its ``obj`` keyword."""
        self._streams += 1
        obj = before.rfind(b"obj")
        dictionary = before[obj + 3 :] if obj >= 0 else before
        m = _FILTER.search(dictionary)
        filters = [] if m is None else _NAME.findall(m.group(1))
        if _IMAGE_XOBJECT.search(dictionary):  # pixels, however encoded: scanned as the bytes they are
            self._skipping = True
            return
        if len(filters) == 1 and filters[0] in _FLATE:
            self._child = self._new_child()
            self._inflater = Inflater(self._budget, zlib.MAX_WBITS, self._child)
            return
        if filters and filters[0] in _A85 and (len(filters) == 1 or (len(filters) == 2 and filters[1] in _FLATE)):
            self._child = self._new_child()
            inflating = _Inflating(Inflater(self._budget, zlib.MAX_WBITS, self._child))
            self._a85 = Ascii85Decoder(self._child if len(filters) == 1 else inflating)
            return
        if filters and not all(f in _IMAGES for f in filters):
            names = " ".join("/" + f.decode("latin-1")[:32] for f in filters[:4])
            self._budget.unscannable(f"PDF stream {self._streams} uses the filter {names}")
        self._skipping = True

    def _inflate(self, data: bytes | memoryview) -> bytes:
        assert self._inflater is not None
        try:
            rest = self._inflater.feed(data)
        except zlib.error:
            self._budget.unscannable(f"PDF stream {self._streams} does not inflate (encrypted, or damaged)")
            self._inflater = None
            self._end_child()
            self._skipping = True
            return bytes(data)
        if rest is None:
            return b""
        self._inflater = None
        self._end_child()
        return rest  # "endstream" and on: outside again

    def _ascii85(self, data: bytes | memoryview) -> bytes:
        assert self._a85 is not None
        try:
            rest = self._a85.feed(data)
        except (ValueError, zlib.error):
            self._budget.unscannable(f"PDF stream {self._streams} does not decode (encrypted, or damaged)")
            self._a85 = None
            self._end_child()
            self._skipping = True
            return bytes(data)
        if rest is None:
            return b""
        self._a85 = None
        self._end_child()
        return rest

    def _skip(self, data: bytes | memoryview) -> bytes:
        buf = self._buf
        buf += data
        at = buf.find(_END)
        if at < 0:
            del buf[: max(0, len(buf) - len(_END) + 1)]
            return b""
        rest = bytes(buf[at + len(_END) :])
        self._buf, self._skipping = bytearray(), False
        return rest

    def _end_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.finish()


class _Inflating:
    """A deflate stream fed as a sink (ASCII85's output); what follows its end is ignored."""

    def __init__(self, inflater: Inflater) -> None:
        self._inflater = inflater

    def feed(self, data: bytes | memoryview) -> None:
        if not self._inflater.ended:
            self._inflater.feed(data)

    def finish(self) -> None:
        pass
