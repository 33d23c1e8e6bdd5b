"""The journal's contract, split by concern: the work queue, the erasure log, leases and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
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
    owner: str = ""  # who claimed it (the lease holder at claim time)


@dataclass(frozen=True)
class Pending:
    """A row as an operator sees it (``replicator journal list``). Names are region names (tags)."""

    id: int
    kind: Kind
    name: str
    src: str
    dst: str
    version: str
    attempts: int
    last_error: str
    created: float  # epoch seconds
    next_try: float  # epoch seconds; due when in the past
    leased_by: str  # "" when no worker holds it
    lease_until: float  # epoch seconds; a lease in the past has lapsed


class JournalError(Exception):
    """The journal cannot do what was asked; the message names the journal, never a password."""


class JournalUnavailable(JournalError):
    """The journal's database could not be reached or did not answer in time; retrying later may work."""


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


@dataclass(frozen=True)
class RegionLag:
    """What one destination region is owed (the replication-lag SLO's figures, like S3 RTC's)."""

    dst: str
    pending: int  # rows owed to ``dst``
    pending_bytes: int  # the sizes recorded with those rows (0 where a row was added without one)
    oldest_age: float  # seconds since the oldest of them was added


class WorkQueue(Protocol):
    """The work the service owes the regions: rows added, claimed under a lease, completed or retried."""

    async def add(self, kind: Kind, name: str, *, src: str, dst: str, version: str = "", size: int = 0) -> None:
        """Record work; durable when this returns. ``size``: the stored bytes to move (a coalesced
        row keeps the latest)."""
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

    async def backlog(self) -> Backlog: ...

    async def lag(self) -> list[RegionLag]:
        """Per destination region that is owed work: rows, bytes and the oldest row's age, by ``dst``."""
        ...

    async def behind(self, name: str) -> set[str]:
        """The regions this journal still owes work on ``name`` (their copy may be out of date)."""
        ...

    # -- the operator's view (``replicator journal``) ---------------------------------------

    async def pending(
        self, *, ids: Sequence[int] | None = None, dst: str | None = None, limit: int = 100
    ) -> tuple[int, list[Pending]]:
        """How many rows match (``ids`` and ``dst`` narrow; None: all), and the first ``limit`` by next try."""
        ...

    async def retry_now(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        """Make the matching rows due now (leases are left alone); return how many matched."""
        ...

    async def drop(self, *, ids: Sequence[int] | None = None, dst: str | None = None) -> int:
        """Remove the matching rows (their work is not done; the reconciler still levels the regions)."""
        ...


class ErasureLog(Protocol):
    """Each customer erasure's receipt: started durably, updated per region, finished, resumed."""

    async def create_erasure(self, customer_tag: str, key_destroyed_at: str, regions: list[str]) -> Erasure:
        """Record that an erasure started; durable when this returns."""
        ...

    async def update_erasure(self, id: str, region: str, *, deleted: int, remaining: int) -> None: ...

    async def finish_erasure(self, id: str) -> None: ...

    async def erasure(self, id: str) -> Erasure | None: ...

    async def running_erasures(self) -> list[Erasure]: ...


class Coordination(Protocol):
    """Leases and checkpoints, one row per key: the reconciler's run lease and resume point,
    and health's audit checkpoint."""

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

    async def load_checkpoint(self, key: str) -> str | None: ...

    async def clear_checkpoint(self, key: str) -> None: ...


class Journal(WorkQueue, ErasureLog, Coordination, Protocol):
    """One database holding all three (SQLite in one process, PostgreSQL shared); each backend implements it."""

    async def close(self) -> None: ...
