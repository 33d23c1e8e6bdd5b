"""Version stamps: a hybrid logical clock (wall-clock ms, a counter, a node id).

A stamp orders every write of the whole system: later writes on one node get
higher stamps even if the wall clock steps back, and stamps from two nodes
compare by time first, then counter, then node id, so two replicas of one
name always converge on the same winner.

The text form sorts like the stamp itself (fixed-width fields), because it is
stored in region metadata and compared by the reconciler as a string::

    0001732212345678.00000.node-a
    └ ms since epoch ┘ └ctr┘ └node┘
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_TEXT = re.compile(r"(\d{16})\.(\d{5})\.([a-z0-9-]{1,32})")
MAX_COUNTER = 99_999


@dataclass(frozen=True, order=True)
class Version:
    ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return f"{self.ms:016d}.{self.counter:05d}.{self.node}"

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _TEXT.fullmatch(text)
        if not m:
            raise ValueError(f"not a version stamp: {text!r}")
        return cls(int(m[1]), int(m[2]), m[3])


class Clock:
    """Issues strictly increasing stamps for one node; ``observe`` folds in stamps seen elsewhere."""

    def __init__(self, node: str, wall_ms: Callable[[], int] | None = None):
        if not re.fullmatch(r"[a-z0-9-]{1,32}", node):
            raise ValueError(f"node id {node!r} must match [a-z0-9-]{{1,32}}")
        self.node = node
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = Version(0, 0, node)
        self._lock = threading.Lock()

    def now(self) -> Version:
        with self._lock:
            wall = self._wall_ms()
            if wall > self._last.ms:
                stamp = Version(wall, 0, self.node)
            elif self._last.counter < MAX_COUNTER:
                stamp = Version(self._last.ms, self._last.counter + 1, self.node)
            else:  # counter exhausted within one ms: borrow the next ms
                stamp = Version(self._last.ms + 1, 0, self.node)
            self._last = stamp
            return stamp

    def observe(self, seen: Version) -> None:
        """Make every later stamp of this clock exceed ``seen`` (a stamp read from a region)."""
        with self._lock:
            if (seen.ms, seen.counter) > (self._last.ms, self._last.counter):
                self._last = Version(seen.ms, seen.counter, self.node)
