"""The journal: durable work the service owes the regions.

A row says "make region ``dst`` level with region ``src`` for object
``name``" (``copy``), "replace ``dst``'s copy with ``src``'s even at the same
version" (``repair``: ``dst`` failed its digest), or "remove ``name`` from
``dst``" (``delete``). A write
that reached only one region is acknowledged only after its row is durable, so
the journal is what turns a region outage into delay instead of loss.

Rows are coalesced: one pending row per (kind, name, dst). Adding work for a
row a worker is busy with bumps its generation, and ``complete`` removes a row
only if its generation is unchanged, so work added during a copy is never
dropped by that copy's completion.

Workers ``claim`` rows under a lease; a worker that dies lets its lease lapse
and another claims the row. Two implementations share this interface: SQLite
(embedded default, one process) and PostgreSQL (several processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["copy", "repair", "delete"]


@dataclass(frozen=True)
class Task:
    id: int
    kind: Kind
    name: str
    src: str
    dst: str
    version: str
    attempts: int
    gen: int
    last_error: str


@dataclass(frozen=True)
class Erasure:
    """A customer erasure's receipt: per region, objects deleted and still remaining."""

    id: str
    customer_tag: str
    key_destroyed_at: str
    state: Literal["running", "done"]
    regions: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age: float  # seconds; 0.0 when nothing is pending


class Journal(Protocol):
    async def add(self, kind: Kind, name: str, *, src: str, dst: str, version: str = "") -> None:
        """Record work; durable when this returns."""
        ...

    async def claim(self, owner: str, *, limit: int = 32, lease: float = 60.0) -> list[Task]:
        """Lease up to ``limit`` rows that are due and not leased by a live worker."""
        ...

    async def complete(self, task: Task) -> bool:
        """Remove the row if nothing was added to it since the claim; False if it stays."""
        ...

    async def retry_later(self, task: Task, error: str, delay: float) -> None:
        """Release the lease, count the attempt and keep the row for ``delay`` seconds."""
        ...

    async def backlog(self) -> Backlog:
        ...

    async def create_erasure(self, customer_tag: str, key_destroyed_at: str, regions: list[str]) -> Erasure:
        """Record that an erasure started; durable when this returns."""
        ...

    async def update_erasure(self, id: str, region: str, *, deleted: int, remaining: int) -> None:
        ...

    async def finish_erasure(self, id: str) -> None:
        ...

    async def erasure(self, id: str) -> Erasure | None:
        ...

    async def running_erasures(self) -> list[Erasure]:
        ...

    # -- the reconciler's lease and checkpoint (one row per key) --------------------------

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lease ``key`` for ``ttl`` seconds: True if it was free, expired, or already
        ``owner``'s (then it is extended); False while another owner holds it."""
        ...

    async def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; False if ``owner`` no longer holds it."""
        ...

    async def release_lease(self, key: str, owner: str) -> None:
        """Give the lease up (only ``owner``'s; someone else's is left alone)."""
        ...

    async def save_checkpoint(self, key: str, name: str) -> None:
        """Record that every name up to ``name`` is done for ``key``; durable when this returns."""
        ...

    async def load_checkpoint(self, key: str) -> str | None:
        ...

    async def clear_checkpoint(self, key: str) -> None:
        ...

    async def close(self) -> None:
        ...


def open_journal(url: str) -> Journal:
    """Open the journal named by ``url``: ``sqlite:///path`` (default) or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteJournal

        return SqliteJournal(url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported journal URL scheme in {url.split(':', 1)[0]!r}: "
                     "use sqlite:///path or postgresql://host/db")
