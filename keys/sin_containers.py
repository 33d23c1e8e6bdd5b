"""The SIN check of a whole body: the bytes as they are, and what containers in it hold.

``BodyScanner`` streams like ``keys.sin.SinScanner`` (``feed``/``afeed``, then ``finish``) and
finds a SIN

* in the body's bytes as they are, always: exactly what ``SinScanner`` finds (plain text costs
  that scan and nothing more once its first bytes have shown it is no container);
* inside what the first bytes of a stream show it to be: gzip (``keys._scan_gzip``), zip, its
  stored and deflated entries (``keys._scan_zip``), a PDF's Flate streams (``keys._scan_pdf``),
  each decoded as it streams into a stream of its own that is looked at the same way, so a zip in
  a gzip is opened too; and UTF-16 text (a byte-order mark, or NULs where UTF-16 puts them),
  transcoded to UTF-8 (``keys._scan_text``).

Theory of operation: each stream (the body, a gzip's content, a zip entry, a PDF stream) is a
``_Layer``: a ``SinScanner`` over its bytes and, once ``SNIFF_BYTES`` have arrived (or the stream
has ended), at most one decoder chosen from them, fed the same bytes and writing into child
layers one level deeper. Memory is bounded: decoders keep headers and a few KiB of window, and an
inflater hands out at most 256 KiB at a time. The ``ScanLimits`` guard against bombs, for the
body as a whole: decoded bytes in all (``max_expanded_bytes``), decoded bytes per body byte
(``max_expansion_ratio``; the first MiB is free), and containers within containers
(``max_depth``); passing one raises ``ScanLimitExceeded`` naming it, at once, before the body's
end. What cannot be scanned (an encrypted zip entry, another compression, a PDF filter other than
Flate) raises ``Unscannable`` when the class refuses it (``refuse_unscannable``), else is counted
in ``unscanned`` and skipped.
"""

from __future__ import annotations

import asyncio

from keys._scan_base import Budget, ScanLimitExceeded, ScanLimits, SinFound, Sink, Unscannable
from keys._scan_gzip import GzipDecoder, is_gzip_member
from keys._scan_pdf import PDF_MAGIC, PdfDecoder
from keys._scan_text import ScannerSink, Utf16Decoder, utf16_encoding
from keys._scan_zip import ZIP_MAGIC, ZipDecoder
from keys.sin import OFF_LOOP_BYTES

__all__ = ["SNIFF_BYTES", "BodyScanner", "ScanLimitExceeded", "ScanLimits", "Unscannable"]

SNIFF_BYTES = 512  # a stream's first bytes, which say what it is
# A chunk that is being decoded costs far more than a scan: worth a thread hop from this size.
_OFF_LOOP_DECODING = 1 << 14


class _Layer:
    """One stream: scanned as it is, and decoded by what its first bytes show it to be."""

    __slots__ = ("_budget", "_decoder", "_depth", "_head", "_scanner")

    def __init__(self, budget: Budget, depth: int) -> None:
        self._budget = budget
        self._depth = depth
        self._scanner = ScannerSink()
        self._head: bytearray | None = bytearray()  # until the decoder is chosen
        self._decoder: Sink | None = None

    @property
    def decoding(self) -> bool:
        return self._decoder is not None or self._head is not None

    def feed(self, data: bytes | memoryview) -> None:
        self._scanner.feed(data)
        if self._head is None:
            if self._decoder is not None:
                self._decoder.feed(data)
            return
        if not self._head and len(data) >= SNIFF_BYTES:  # a first chunk long enough: no copy
            self._head = None
            self._decoder = self._decoder_for(bytes(data[:SNIFF_BYTES]))
            if self._decoder is not None:
                self._decoder.feed(data)
            return
        self._head += data
        if len(self._head) >= SNIFF_BYTES:
            self._choose()

    def finish(self) -> None:
        self._scanner.finish()
        if self._head is not None:
            self._choose()
        if self._decoder is not None:
            self._decoder.finish()

    def _choose(self) -> None:
        assert self._head is not None
        head, self._head = bytes(self._head), None
        self._decoder = self._decoder_for(head)
        if self._decoder is not None:
            self._decoder.feed(head)

    def _decoder_for(self, head: bytes) -> Sink | None:
        budget, depth = self._budget, self._depth + 1
        if is_gzip_member(head):
            budget.deeper(depth)
            return GzipDecoder(budget, _Layer(budget, depth))
        if head.startswith(ZIP_MAGIC):
            budget.deeper(depth)
            return ZipDecoder(budget, lambda: _Layer(budget, depth))
        if head.startswith(PDF_MAGIC):
            budget.deeper(depth)
            return PdfDecoder(budget, lambda: _Layer(budget, depth))
        encoding = utf16_encoding(head)
        if encoding is not None:  # text: nothing inside it to open, so no deeper
            return Utf16Decoder(encoding, ScannerSink())
        return None


class BodyScanner:
    """``feed(chunk) -> bool`` (True: a SIN is certain), ``afeed``, ``finish() -> bool``, ``found``.

    Raises ``ScanLimitExceeded`` or ``Unscannable`` from ``feed``/``finish`` as soon as the body
    passes a limit or holds what the class refuses unscanned. One caller at a time."""

    def __init__(self, limits: ScanLimits | None = None, *, refuse_unscannable: bool = True) -> None:
        self._budget = Budget(limits or ScanLimits(), refuse_unscannable)
        self._root = _Layer(self._budget, 0)
        self._found = False
        self._finished = False

    @property
    def found(self) -> bool:
        return self._found

    @property
    def expanded(self) -> int:
        """Bytes decoded out of containers so far."""
        return self._budget.expanded

    @property
    def unscanned(self) -> tuple[int, list[str]]:
        """How many parts were skipped as unscannable (an ``accept`` class), and the first reasons."""
        return self._budget.unscanned_count, list(self._budget.unscanned)

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        if self._finished:
            raise ValueError("scanner already finished")
        if self._found or not chunk:
            return self._found
        view = memoryview(chunk)
        if view.format != "B" or not view.c_contiguous:
            view = memoryview(view.tobytes())
        self._budget.body_bytes += view.nbytes
        try:
            self._root.feed(view)
        except SinFound:
            self._found = True
        return self._found

    async def afeed(self, chunk: bytes | bytearray | memoryview) -> bool:
        """``feed``, in a worker thread when the chunk is large, or is being decoded (both release
        the GIL: the compiled scan and zlib), so the event loop keeps serving."""
        size = memoryview(chunk).nbytes
        if size >= OFF_LOOP_BYTES or (size >= _OFF_LOOP_DECODING and self._root.decoding):
            return await asyncio.to_thread(self.feed, chunk)
        return self.feed(chunk)

    def finish(self) -> bool:
        """The end of the body: judge what is left; returns ``found``."""
        if not self._finished and not self._found:
            self._finished = True
            try:
                self._root.finish()
            except SinFound:
                self._found = True
        self._finished = True
        return self._found
