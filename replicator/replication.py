"""Replication workers: carry out the journal's rows, moving ciphertext only.

A ``copy`` row makes the destination level with the source for one name: the
higher version wins, a destination that already holds the same or a newer
version is left alone, and what was copied is checked against the source's
digest. A ``delete`` row removes the name from the destination. Failures go
back to the journal with exponential backoff; workers never loop on an error
themselves.

Every copy and every write of one name holds that name's lock, so a worker
can never put an older version over a newer one that a concurrent write just
stored. (Within one process; the PostgreSQL journal will extend this across
processes.)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from contextlib import asynccontextmanager

from regions import Corrupt, NotFound, PreconditionFailed, Region, RegionError

from .journal import Journal, JournalError, Task
from .layout import version_of
from .metrics import Metrics

log = logging.getLogger("replicator.replication")

MAX_BACKOFF = 300.0


class NameLocks:
    """One asyncio lock per object name, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str):
        lock, users = self._locks.get(name, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)


async def copy_newest(src: Region, dst: Region, name: str, *, repair: bool = False) -> str:
    """Make ``dst`` hold ``src``'s version of ``name`` unless it has the same or newer.

    With ``repair`` the same version is copied too: ``dst``'s bytes failed
    their digest, and ``src``'s copy is checked on the way (the get raises
    ``Corrupt`` before the put can complete if ``src`` is bad as well).

    Returns ``"copied"``, ``"current"`` (nothing to do) or ``"gone"`` (the
    source no longer has it). Raises RegionError on failure; ``Corrupt`` when
    the bytes that arrived do not match the source's digest.
    """
    for attempt in range(3):
        try:
            src_info = await src.head(name)
        except NotFound:
            return "gone"
        try:
            dst_info = await dst.head(name)
        except NotFound:
            dst_info = None
        src_version = version_of(src_info)
        if dst_info is not None and src_version is not None:
            dst_version = version_of(dst_info)
            if dst_version is not None and (dst_version > src_version
                                            or (dst_version == src_version and not repair)):
                return "current"
        # The put lands only on the write decided from (or only where there is none): a write
        # racing this copy (another process, or Swift's window) fails it, and we decide again.
        condition = {"if_match": dst_info.etag} if dst_info is not None else {"if_none_match": True}
        info, stream = await src.get(name)
        try:
            stored = await dst.put(name, stream, info.meta, **condition)
            break
        except PreconditionFailed:
            if attempt == 2:
                raise  # the journal retries later
        finally:
            await stream.aclose()
    if stored.digest != info.digest:
        raise Corrupt(f"copy from {src.name!r} arrived with digest {stored.digest[:12]}…, "
                      f"expected {info.digest[:12]}…", region=dst.name, name=name)
    return "copied"


class Workers:
    """Claims journal rows and carries them out with bounded concurrency."""

    def __init__(self, journal: Journal, regions: Mapping[str, Region], locks: NameLocks,
                 metrics: Metrics, *, owner: str, concurrency: int = 8, idle_wait: float = 1.0,
                 lease: float = 60.0):
        self.journal = journal
        self.regions = regions
        self.locks = locks
        self.metrics = metrics
        self.owner = owner
        self.concurrency = concurrency
        self.idle_wait = idle_wait
        self.lease = lease  # seconds a claimed batch is ours; a worker that dies frees it after this
        self._wake = asyncio.Event()

    def kick(self) -> None:
        """New work was journaled: look now instead of at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim one batch and carry it out; return how many rows were claimed."""
        tasks = await self.journal.claim(self.owner, limit=self.concurrency * 4, lease=self.lease)
        sem = asyncio.Semaphore(self.concurrency)

        async def one(task: Task):
            async with sem:
                await self._carry_out(task)

        await asyncio.gather(*(one(t) for t in tasks))
        return len(tasks)

    async def run(self) -> None:
        while True:
            try:
                if await self.run_once():
                    continue
            except JournalError as e:  # its database is away (PostgreSQL): wait, never stop replicating
                log.warning("journal unavailable", extra={"error": type(e).__name__, "detail": str(e)})
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle_wait)
            except asyncio.TimeoutError:
                pass

    async def drain(self) -> None:
        """Run until no row is due (tests, and the end of a reconcile)."""
        while await self.run_once():
            pass

    async def _carry_out(self, task: Task) -> None:
        try:
            async with self.locks.hold(task.name):
                if task.kind in ("copy", "repair"):
                    outcome = await copy_newest(self.regions[task.src], self.regions[task.dst], task.name,
                                                repair=task.kind == "repair")
                else:
                    await self.regions[task.dst].delete(task.name)
                    outcome = "deleted"
        except RegionError as e:
            delay = min(MAX_BACKOFF, 2 ** task.attempts) * random.uniform(0.5, 1.0)
            await self.journal.retry_later(task, f"{type(e).__name__}: {e}", delay)
            self.metrics.replicated.labels(task.kind, "retry").inc()
            log.warning("journal task failed, will retry", extra={
                "task": task.id, "kind": task.kind, "object": task.name, "error": type(e).__name__,
                "attempts": task.attempts + 1, "retry_in": round(delay, 1)})
            return
        await self.journal.complete(task)
        self.metrics.replicated.labels(task.kind, outcome).inc()
