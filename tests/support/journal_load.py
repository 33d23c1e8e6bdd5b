"""A concurrent journal workload that keeps a ledger of what the journal acknowledged, and the check of
that ledger against what a database holds (after a failover: the promoted standby).

Every kind of write the service makes goes in: work rows added, claimed, completed and put back
(``retry_later``), erasure receipts created, updated and finished, reconciler leases taken and
checkpoints saved. A call that raised ``JournalUnavailable`` was not acknowledged and its outcome is
unknown (it may have committed just before the crash): the ledger holds only answered calls. Any
other error is recorded as a failure of the journal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from replicator.journal import Journal, JournalUnavailable

_MISSING: Any = object()


@dataclass
class JournalLedger:
    added: set[str] = field(default_factory=set)  # names whose add() was acknowledged
    completed: dict[int, int] = field(default_factory=dict)  # task id -> gen, complete() answered True
    put_back: set[int] = field(default_factory=set)  # task ids whose retry_later() was acknowledged
    erasures: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> what was acknowledged of it
    checkpoints: dict[str, str] = field(default_factory=dict)  # key -> newest acknowledged name
    leases: dict[str, str] = field(default_factory=dict)  # key -> owner, acquire_lease() answered True
    acked: Counter = field(default_factory=Counter)  # operation -> acknowledged calls
    unavailable: Counter = field(default_factory=Counter)  # operation -> JournalUnavailable
    errors: list[str] = field(default_factory=list)  # anything else: the journal misbehaved
    answered: list[tuple[float, float, str]] = field(default_factory=list)  # (started, answered, op), acked

    def first_ack_started_after(self, moment: float) -> float | None:
        """When the first call started after ``moment`` was acknowledged (a recovery's end)."""
        return min((done for started, done, _ in self.answered if started > moment), default=None)

    def acked_after(self, moment: float) -> Counter:
        return Counter(op for started, _, op in self.answered if started > moment)


class JournalLoad:
    """``workers`` tasks of each kind on one journal until :meth:`stop`; ``ledger`` is the record."""

    def __init__(self, journal: Journal, workers: int = 2, seed: int = 0):
        self.journal = journal
        self.workers = workers
        self.rng = random.Random(seed)
        self.ledger = JournalLedger()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        kinds = (self._adder, self._claimer, self._checkpointer, self._leaser)
        self._tasks = [asyncio.create_task(kind(k)) for kind in kinds for k in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._eraser()))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _call(self, op: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except JournalUnavailable:
            self.ledger.unavailable[op] += 1
            await asyncio.sleep(0.02)  # as callers do: later, not in a tight loop
            return _MISSING
        except Exception as e:  # anything but "unavailable" is the journal misbehaving
            cause = "".join(traceback.format_exception(e.__cause__)) if e.__cause__ else ""
            self.ledger.errors.append(f"{op}: {type(e).__name__}: {e}\n{cause}")
            await asyncio.sleep(0.02)
            return _MISSING
        self.ledger.acked[op] += 1
        self.ledger.answered.append((started, time.monotonic(), op))
        return result

    async def _until_acked(self, op: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        while True:
            result = await self._call(op, fn, *args, **kwargs)
            if result is not _MISSING or self._stop.is_set():
                return result

    async def _adder(self, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"v1/load/a{k}/{i:06d}"
            i += 1
            if await self._call("add", self.journal.add, "copy", name, src="ca", dst="jp") is not _MISSING:
                self.ledger.added.add(name)

    async def _claimer(self, k: int) -> None:
        owner = f"claimer-{k}"
        while not self._stop.is_set():
            tasks = await self._call("claim", self.journal.claim, owner, limit=8, lease=60)
            if tasks is _MISSING or not tasks:  # not answered, or nothing due
                await asyncio.sleep(0.01)
                continue
            for task in tasks:
                if self.rng.random() < 0.2:
                    if await self._call("retry_later", self.journal.retry_later, task, "put back", 0.0) is not _MISSING:
                        self.ledger.put_back.add(task.id)
                elif await self._call("complete", self.journal.complete, task) is True:
                    self.ledger.completed[task.id] = task.gen

    async def _eraser(self) -> None:
        i = 0
        while not self._stop.is_set():
            tag = f"tag{i:06d}"
            i += 1
            erasure = await self._until_acked(
                "create_erasure", self.journal.create_erasure, tag, "2026-01-01T00:00:00Z", ["ca", "jp"]
            )
            if erasure is _MISSING:
                return
            record = self.ledger.erasures[erasure.id] = {"tag": tag, "state": "running"}
            deleted = i % 7
            done = await self._until_acked(
                "update_erasure", self.journal.update_erasure, erasure.id, "ca", deleted=deleted, remaining=0
            )
            if done is _MISSING:
                return
            record["ca"] = {"deleted": deleted, "remaining": 0}
            if await self._until_acked("finish_erasure", self.journal.finish_erasure, erasure.id) is _MISSING:
                return
            record["state"] = "done"

    async def _checkpointer(self, k: int) -> None:
        key, i = f"reconcile:cp{k}", 0
        while not self._stop.is_set():
            name = f"v1/{i:08d}"  # sorts as it grows: a checkpoint only moves forward
            i += 1
            if await self._call("save_checkpoint", self.journal.save_checkpoint, key, name) is not _MISSING:
                self.ledger.checkpoints[key] = name

    async def _leaser(self, k: int) -> None:
        owner, i = f"node-{k}", 0
        while not self._stop.is_set():
            key = f"lease:{k}:{i}"
            i += 1
            if await self._call("acquire_lease", self.journal.acquire_lease, key, owner, 3600) is True:
                self.ledger.leases[key] = owner


async def lost(ledger: JournalLedger, conn: asyncpg.Connection) -> dict[str, list]:
    """What the ledger says was acknowledged and ``conn``'s database does not hold, by kind (empty: none)."""
    tasks = {r["id"]: r for r in await conn.fetch("SELECT id, name, attempts FROM tasks")}
    names = {r["name"] for r in tasks.values()}
    done = {(r["task_id"], r["gen"]) for r in await conn.fetch("SELECT task_id, gen FROM completions")}
    done_names = {r["name"] for r in await conn.fetch("SELECT name FROM completions")}
    done_ids = {i for i, _ in done}
    erasures = {r["id"]: r for r in await conn.fetch("SELECT id, customer_tag, state, regions FROM erasures")}
    checkpoints = dict(await conn.fetch("SELECT key, name FROM checkpoints"))
    leases = dict(await conn.fetch("SELECT key, owner FROM leases"))

    def erasure_lost(id: str, want: dict[str, Any]) -> bool:
        row = erasures.get(id)
        if row is None or row["customer_tag"] != want["tag"]:
            return True
        if want["state"] == "done" and row["state"] != "done":
            return True
        return "ca" in want and json.loads(row["regions"])["ca"] != want["ca"]

    return {
        # an added row is still pending, or someone completed it
        "add": sorted(n for n in ledger.added if n not in names and n not in done_names),
        # a completed row is gone from the queue, and its completion is recorded
        "complete": sorted(i for i, gen in ledger.completed.items() if i in tasks or (i, gen) not in done),
        # a put-back row counts the attempt, unless a later claim completed it
        "retry_later": sorted(
            i for i in ledger.put_back if not (i in done_ids or (i in tasks and tasks[i]["attempts"] >= 1))
        ),
        "erasure": sorted(i for i, want in ledger.erasures.items() if erasure_lost(i, want)),
        # a checkpoint never goes back (an unanswered later save may have landed)
        "save_checkpoint": sorted(k for k, v in ledger.checkpoints.items() if checkpoints.get(k, "") < v),
        "acquire_lease": sorted(k for k, owner in ledger.leases.items() if leases.get(k) != owner),
    }
