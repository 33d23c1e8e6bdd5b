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
and another claims the row. A worker whose lease lapsed may still finish:
``complete`` and ``retry_later`` touch the lease only while it is still the
claimer's, so a slow worker never frees a row another worker has re-claimed.
Two implementations share this interface: SQLite (embedded default, one
process) and PostgreSQL (several processes, ``postgres.py``).
"""

from __future__ import annotations

from replicator.journal.contract import (
    Backlog,
    Coordination,
    Erasure,
    ErasureLog,
    Journal,
    JournalError,
    JournalUnavailable,
    Kind,
    Pending,
    RegionLag,
    Task,
    WorkQueue,
)

__all__ = [
    "Backlog",
    "Coordination",
    "Erasure",
    "ErasureLog",
    "Journal",
    "JournalError",
    "JournalUnavailable",
    "Kind",
    "Pending",
    "RegionLag",
    "Task",
    "WorkQueue",
    "check_journal_url",
    "is_postgresql",
    "open_journal",
]


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (a journal or key store shared by several nodes)."""
    return url.startswith(("postgresql://", "postgres://"))


def open_journal(url: str) -> Journal:
    """Open the journal named by ``url``: ``sqlite:///path`` (default) or ``postgresql://…``.

    A PostgreSQL journal connects at its first call (``ValueError`` here only
    for a malformed URL); see :mod:`.postgres` for the URL's options.
    """
    if url.startswith("sqlite:///"):
        from replicator.journal.sqlite import SqliteJournal

        return SqliteJournal(url.removeprefix("sqlite:///"))
    if is_postgresql(url):
        from replicator.journal.postgres import PgJournal

        return PgJournal(url)
    raise ValueError(
        f"unsupported journal URL scheme in {url.split(':', 1)[0]!r}: use sqlite:///path or postgresql://host/db"
    )


def check_journal_url(url: str) -> None:
    """What the config checks at load: a usable URL, and a PostgreSQL password only by reference."""
    if is_postgresql(url):
        from replicator.journal.pgurl import check_url

        check_url(url)
    elif not url.startswith("sqlite:///"):
        open_journal(url)  # raises the unsupported-scheme error
