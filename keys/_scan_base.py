"""What the container decoders of ``keys.sin_containers`` share: the limits, the one budget a
body's decoding draws on, the errors, the ``Sink`` contract, and the bounded inflater.

A ``Sink`` takes a stream's bytes in chunks (``feed``) and is told when it ends (``finish``).
Every decoder is a sink that writes what it decodes into child sinks; a SIN found anywhere
raises ``SinFound``, which unwinds the whole tree at once. Memory is bounded: an inflater never
produces more than ``INFLATE_CHUNK`` bytes per call, so a 64 KiB chunk of a bomb is decoded and
scanned a piece at a time while the budget counts it, and refused the moment it passes a limit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol

INFLATE_CHUNK = 1 << 18  # at most this much decoded output in memory per inflate call
#: Expanded bytes that are free of the ratio limit: a short, very repetitive text is not a bomb.
RATIO_SLACK = 1 << 20


@dataclass(frozen=True)
class ScanLimits:
    """Bomb guards for one body: the decoded bytes of every container in it, counted together."""

    max_expansion_ratio: int = 100  # decoded bytes per body byte (beyond RATIO_SLACK)
    max_expanded_bytes: int = 1 << 30  # decoded bytes in all
    max_depth: int = 3  # containers inside containers (a gzip of a zip is depth 2)


class SinFound(Exception):
    """A SIN was found (internal: unwinds the decoders; ``BodyScanner.feed`` returns True)."""


class ScanLimitExceeded(Exception):
    """The body passed one of its ``ScanLimits``; ``limit`` names the setting."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message


class Unscannable(Exception):
    """Part of the body cannot be scanned (an encrypted zip entry, an unknown compression) and the
    class refuses what it cannot scan. ``reason`` says what, never with the body's content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    def feed(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> None: ...


@dataclass
class Budget:
    """The limits, and what one body has used of them; also what was left unscanned (``accept``)."""

    limits: ScanLimits
    refuse_unscannable: bool
    body_bytes: int = 0  # bytes of the body itself seen so far
    expanded: int = 0  # bytes decoded by every inflater of the body
    unscanned: list[str] = field(default_factory=list)  # reasons, when accepted (the first few)
    unscanned_count: int = 0

    def expand(self, n: int) -> None:
        self.expanded += n
        limits = self.limits
        if self.expanded > limits.max_expanded_bytes:
            raise ScanLimitExceeded(
                "max_expanded_bytes",
                f"the body's compressed content expands past max_expanded_bytes ({limits.max_expanded_bytes} bytes)",
            )
        if self.expanded > limits.max_expansion_ratio * self.body_bytes + RATIO_SLACK:
            raise ScanLimitExceeded(
                "max_expansion_ratio",
                f"the body's compressed content expands more than max_expansion_ratio "
                f"({limits.max_expansion_ratio} times its {self.body_bytes} bytes)",
            )

    def deeper(self, depth: int) -> None:
        """A container opens whose content is at ``depth``."""
        if depth > self.limits.max_depth:
            raise ScanLimitExceeded(
                "max_depth", f"containers nest deeper than max_depth ({self.limits.max_depth}): cannot scan it"
            )

    def unscannable(self, reason: str) -> None:
        if self.refuse_unscannable:
            raise Unscannable(reason)
        self.unscanned_count += 1
        if len(self.unscanned) < 8:
            self.unscanned.append(reason)


class Inflater:
    """One deflate stream (zlib, gzip or raw, by ``wbits``) into ``out``, bounded and counted.

    ``feed`` returns None while the stream goes on, or the bytes after its end once it has
    ended. A stream that does not inflate raises ``zlib.error``."""

    def __init__(self, budget: Budget, wbits: int, out: Sink) -> None:
        self._budget = budget
        self._d = zlib.decompressobj(wbits)
        self._out = out

    @property
    def ended(self) -> bool:
        return self._d.eof

    def feed(self, data: bytes | memoryview) -> bytes | None:
        d, pending = self._d, data
        while True:
            out = d.decompress(pending, INFLATE_CHUNK)
            if out:
                self._budget.expand(len(out))
                self._out.feed(out)
            if d.eof:
                return d.unused_data
            pending = d.unconsumed_tail
            if not pending and len(out) < INFLATE_CHUNK:
                return None
