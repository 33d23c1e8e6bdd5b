"""Replication workers: carry out the journal's rows, moving ciphertext only.

A ``copy`` row makes the destination level with the source for one name: the
higher version wins, a destination that already holds the same or a newer
version is left alone, and what was copied is checked against the source's
digest. A ``delete`` row removes the name from the destination. Failures go
back to the journal with exponential backoff; workers never loop on an error
themselves.

Every copy holds the name's lock (:mod:`replicator.replication.locks`) and
is conditional on what the destination held (:mod:`replicator.replication.copy`),
so a worker never puts an older version over a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping

from regions import Region, RegionError
from replicator.hlc import Version
from replicator.journal import JournalError, Task, WorkQueue
from replicator.observe.metrics import Metrics
from replicator.replication.copy import copy_newest
from replicator.replication.locks import Locks

log = logging.getLogger("replicator.replication.workers")

MAX_BACKOFF = 300.0


class Workers:
    """Claims journal rows and carries them out with bounded concurrency."""

    def __init__(
        self,
        journal: WorkQueue,
        regions: Mapping[str, Region],
        locks: Locks,
        metrics: Metrics,
        *,
        owner: str,
        concurrency: int = 8,
        idle_wait: float = 1.0,
        lease: float = 60.0,
        keep_days: Mapping[str, int] | None = None,
    ):
        self.journal = journal
        self.regions = regions
        self.locks = locks
        self.metrics = metrics
        self.owner = owner
        self.concurrency = concurrency
        self.idle_wait = idle_wait
        self.lease = lease  # seconds a claimed batch is ours; a worker that dies frees it after this
        self.keep_days = keep_days  # each class's keep_versions_days: what a copy overwrites is kept
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
            except TimeoutError:
                pass

    async def drain(self) -> None:
        """Run until no row is due (tests, and the end of a reconcile)."""
        while await self.run_once():
            pass

    async def _carry_out(self, task: Task) -> None:
        try:
            async with self.locks.hold(task.name):
                if task.kind in ("copy", "repair"):
                    outcome = await copy_newest(
                        self.regions[task.src],
                        self.regions[task.dst],
                        task.name,
                        repair=task.kind == "repair",
                        keep_days=self.keep_days,
                    )
                else:
                    await self.regions[task.dst].delete(task.name)
                    outcome = "deleted"
        except RegionError as e:
            delay = min(MAX_BACKOFF, 2**task.attempts) * random.uniform(0.5, 1.0)
            await self.journal.retry_later(task, f"{type(e).__name__}: {e}", delay)
            self.metrics.replicated.labels(task.kind, "retry").inc()
            log.warning(
                "journal task failed, will retry",
                extra={
                    "task": task.id,
                    "kind": task.kind,
                    "object": task.name,
                    "error": type(e).__name__,
                    "attempts": task.attempts + 1,
                    "retry_in": round(delay, 1),
                },
            )
            return
        held = task.kind == "copy" and outcome in ("copied", "current") and task.version
        if await self.journal.complete(task) and held:
            # The write was acknowledged at its version stamp; both regions hold it now (the SLO's delay).
            # A repair mends an old copy that went bad (its stamp says nothing of this delay); "gone" held nothing.
            delay = time.time() - Version.parse(task.version).ms / 1000
            self.metrics.replication_delay.labels(task.dst).observe(max(0.0, delay))
        self.metrics.replicated.labels(task.kind, outcome).inc()
