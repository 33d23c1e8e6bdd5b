"""The reconciler's executor: walk both listings, plan each name, carry the actions out.

Theory of operation
-------------------
Both regions are listed prefix by prefix (each listing read ahead in a task of
its own, so the two stores work at once, in bounded memory; each driver also
requests its next page while the current one is consumed) and merge-joined
in byte order (:func:`replicator.merge.merged`): one name at a time, never a
set of names. The listings of the next ``LIST_AHEAD`` prefixes already run
while one prefix is merge-joined, so a store never waits for the walk
between prefixes, and a store that answers several listings at once (a real
cloud: a page is mostly its round trip) lists that many times faster. A
whole-space run has 32 prefixes (:mod:`~replicator.reconcile.partition`):
short listings, which also spare a store whose listing re-sorts what is left
of the prefix on every page (Azurite) most of that work. Each name's two entries go to the pure planner
(:func:`~replicator.reconcile.planner.plan`); a name with actions becomes one
task, and at most ``concurrency`` tasks run at once (the walk waits for a free
slot), so memory stays constant however large the regions are.

Moving data. Only ciphertext moves, as a stream: ``get`` from the source into
``put`` on the target. The source's ``get`` raises ``Corrupt`` at the end of
its stream when the bytes do not match its digest, which fails the put before
it commits; the digest of what was stored is then compared with the source's.
Nothing is ever decrypted.

Re-check before destroying. Every overwrite and delete first re-reads the
target's head and goes ahead only if the target still holds exactly the entry
the plan was made from (same version and digest). The put or delete that
follows is conditional on that head's etag (``if_match``), and a copy onto a
name the target did not hold is create-only (``if_none_match``), so a write
that lands between the re-check and the act makes the act fail its
precondition instead of being overwritten or deleted: the region checks it
atomically with the write (local, Azure). Anything that changed is *skipped*
(not an error: the racing write brings its own replication; the next run
looks again). Swift cannot check ``if_match`` itself; its driver HEADs right
before the PUT or DELETE, leaving a window of about one round trip (see
:mod:`regions.swift`), which the name lock closes when the reconciler runs
in-process with the service (``locks``).

A name's actions run in order and stop at the first that fails (the rest
count as skipped): the planner orders a name's deletes so that the winner
goes last.

Audit. Every deleting action done (``DELETING``: expire, shred, purge, a
tombstone over an older replica) is handed to ``on_removed`` with its
region, which the CLI turns into an audit record; a record that cannot be
written stops the walk (``stopped: audit-failed``), so nothing more is
removed unrecorded.

Checkpoint. Names finish out of order, so the checkpoint is the *watermark*:
the last name such that every name up to it is done (:class:`Watermark`,
which holds one slot per running task only). A resumed run skips every name
at or before it.

``--max-delete``. Before a name's actions start, its deletes (see
:data:`~replicator.reconcile.planner.DELETING`) are reserved against the
limit; a name that would pass it stops the walk (``stopped: max-delete``)
before any of its deletes happen, and the name is not marked done, so a
resumed run starts there.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import nullcontext
from typing import Generic, TypeVar

from regions import Corrupt, NotFound, ObjectInfo, PreconditionFailed, Region, RegionError
from replicator.layout import version_of
from replicator.merge import merged
from replicator.reconcile.partition import below
from replicator.reconcile.planner import Action, Entry, Side, plan
from replicator.reconcile.report import Report
from replicator.replication import NameLocks, copy_over

T = TypeVar("T")


class Unresolved(Exception):
    """An action the executor cannot settle by itself (reported; an operator or a read decides)."""


# -- listings ------------------------------------------------------------------------------


#: Prefixes listed ahead of the one being merge-joined (each holding at most a readahead's items).
LIST_AHEAD = 3

_END = object()


class Readahead(Generic[T]):
    """``listing``'s items, fetched from creation on by a task of its own (at most ``batch * depth`` held).

    :meth:`aclose` stops the task; a listing's error is raised by the reader after the items before it.
    """

    def __init__(self, listing: AsyncIterator[T], *, batch: int = 256, depth: int = 16):
        self._queue: asyncio.Queue = asyncio.Queue(depth)
        self._batch: Iterator[T] = iter(())
        self._ended = False
        self._task = asyncio.ensure_future(self._pump(listing, batch))

    async def _pump(self, listing: AsyncIterator[T], batch: int) -> None:
        items: list[T] = []
        try:
            async for item in listing:
                items.append(item)
                if len(items) == batch:
                    await self._queue.put(items)
                    items = []
            if items:
                await self._queue.put(items)
            await self._queue.put(_END)
        except Exception as e:  # handed to the reader, raised there after what came before it
            if items:
                await self._queue.put(items)
            await self._queue.put(e)
        finally:
            if isinstance(listing, AsyncGenerator):  # a listing stopped early ends its own page read ahead now
                await listing.aclose()

    def __aiter__(self) -> Readahead[T]:
        return self

    async def __anext__(self) -> T:
        for item in self._batch:
            return item
        if self._ended:
            raise StopAsyncIteration
        got = await self._queue.get()
        if got is _END:
            self._ended = True
            raise StopAsyncIteration
        if isinstance(got, Exception):
            self._ended = True
            raise got
        self._batch = iter(got)
        return next(self._batch)  # a batch is never empty

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def listed_ahead(
    regions: Sequence[Region], prefixes: Sequence[str], *, ahead: int = LIST_AHEAD
) -> AsyncGenerator[tuple[str, list[Readahead[ObjectInfo]]], None]:
    """``(prefix, each region's listing of it)`` in order, with the next ``ahead`` prefixes' listings running."""
    started: deque[tuple[str, list[Readahead[ObjectInfo]]]] = deque()
    todo = iter(prefixes)
    try:
        while True:
            while len(started) <= ahead and (prefix := next(todo, None)) is not None:
                started.append((prefix, [Readahead(region.list(prefix)) for region in regions]))
            if not started:
                return
            yield started[0]
            for listing in started.popleft()[1]:
                await listing.aclose()
    finally:
        for _, listings in started:
            for listing in listings:
                await listing.aclose()


# -- the checkpoint ----------------------------------------------------------------------


class Watermark:
    """The last name such that it and every name before it (in walk order) is done."""

    def __init__(self) -> None:
        self.mark: str | None = None
        self._running: deque[list] = deque()  # [name, done, last clean name after it]

    def clean(self, name: str) -> None:
        """``name`` needed nothing (or was only planned)."""
        if self._running:
            self._running[-1][2] = name
        else:
            self.mark = name

    def start(self, name: str) -> list:
        slot = [name, False, None]
        self._running.append(slot)
        return slot

    def finish(self, slot: list) -> None:
        slot[1] = True
        while self._running and self._running[0][1]:
            name, _, after = self._running.popleft()
            self.mark = after or name


def _matches(info: ObjectInfo | None, entry: Entry | None) -> bool:
    """Whether a region's current ``info`` is still the replica the plan saw (both None: still absent)."""
    if info is None or entry is None:
        return info is None and entry is None
    return info.digest == entry.digest and version_of(info) == entry.version


async def _head(region: Region, name: str) -> ObjectInfo | None:
    try:
        return await region.head(name)
    except NotFound:
        return None


class Reconciler:
    """One walk over ``prefixes`` of regions ``a`` and ``b``; :meth:`run` returns the report.

    ``destroyed`` answers ``dek_id in destroyed``; ``retention`` maps a class
    to its days (None: kept until erasure). ``on_checkpoint`` is awaited with
    the watermark every ``checkpoint_every`` seconds; ``on_progress`` is called
    with the last name and the report every ``progress_every`` names.
    """

    def __init__(
        self,
        a: Region,
        b: Region,
        *,
        now_ms: int,
        retention: Mapping[str, int | None],
        destroyed: Container[str],
        grace_ms: int,
        keep: Mapping[str, int] | None = None,
        concurrency: int = 16,
        dry_run: bool = False,
        max_delete: int | None = None,
        locks: NameLocks | None = None,
        on_checkpoint: Callable[[str], Awaitable[None]] | None = None,
        checkpoint_every: float = 2.0,
        on_progress: Callable[[str, Report], None] | None = None,
        progress_every: int = 500,
        on_removed: Callable[[Action, str], Awaitable[None]] | None = None,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.regions: dict[Side, Region] = {"a": a, "b": b}
        self.now_ms = now_ms
        self.retention = retention
        self.destroyed = destroyed
        self.grace_ms = grace_ms
        self.keep = keep
        self.concurrency = concurrency
        self.dry_run = dry_run
        self.max_delete = max_delete
        self.locks = locks
        self.on_checkpoint = on_checkpoint
        self.checkpoint_every = checkpoint_every
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.on_removed = on_removed  # awaited after each deleting action done, with its region's name
        self.report = Report({"a": a.name, "b": b.name}, dry_run=dry_run)
        self.watermark = Watermark()
        self._stop: str | None = None

    def stop(self, reason: str) -> None:
        """Ask the walk to end after the running tasks (a lost lease, a signal)."""
        self._stop = self._stop or reason

    # -- the walk -----------------------------------------------------------------------

    async def run(self, prefixes: Sequence[str], *, after: str | None = None) -> Report:
        report = self.report
        sem = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task] = set()
        last_save = time.monotonic()
        name = ""
        todo = [prefix for prefix in prefixes if after is None or not below(prefix, after)]
        listings = listed_ahead([self.regions["a"], self.regions["b"]], todo)
        try:
            async for _, (list_a, list_b) in listings:
                pairs = merged(list_a, list_b)
                try:
                    async for name, x, y in pairs:
                        if self._stop:
                            break
                        if after is not None and name <= after:  # str order is UTF-8 byte order
                            continue
                        await self._name(name, x, y, sem, tasks)
                        if self.on_progress and report.names % self.progress_every == 0:
                            self.on_progress(name, report)
                        if self.on_checkpoint and time.monotonic() - last_save >= self.checkpoint_every:
                            last_save = time.monotonic()
                            if self.watermark.mark is not None:
                                await self.on_checkpoint(self.watermark.mark)
                finally:
                    await pairs.aclose()
                if self._stop:
                    break
        except RegionError as e:
            report.failed(None, e, name=f"listing {name!r}" if name else "listing", region=e.region or None)
            self.stop("listing-failed")
        finally:
            await listings.aclose()  # stops the listings running ahead
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            report.stopped = self._stop
            report.checkpoint = self.watermark.mark
            report.finished = time.time()
            if self.on_progress:
                self.on_progress(name, report)
        return report

    async def _name(
        self, name: str, x: ObjectInfo | None, y: ObjectInfo | None, sem: asyncio.Semaphore, tasks: set[asyncio.Task]
    ) -> None:
        report = self.report
        report.names += 1
        try:
            a = Entry.of(x) if x is not None else None
            if y is not None and x is not None and y.digest == x.digest and y.size == x.size and y.meta == x.meta:
                b = a  # the usual case, replicas alike: parse once
            else:
                b = Entry.of(y) if y is not None else None
        except ValueError as e:
            report.failed(None, f"not written by the replicator, left alone: {e}", name=name)
            self.watermark.clean(name)
            return
        actions = plan(
            name,
            a,
            b,
            now_ms=self.now_ms,
            retention=self.retention,
            destroyed=self.destroyed,
            grace_ms=self.grace_ms,
            keep=self.keep,
        )
        if not actions:
            self.watermark.clean(name)
            return
        deletes = sum(action.deletes for action in actions)
        if deletes and self.max_delete is not None and report.deletes + deletes > self.max_delete:
            report.failed(
                None, f"--max-delete {self.max_delete} reached: not deleting (and stopping before) this name", name=name
            )
            self.stop("max-delete")
            return
        report.deletes += deletes
        for action in actions:
            report.planned(action)
        if self.dry_run:
            self.watermark.clean(name)
            return
        slot = self.watermark.start(name)
        await sem.acquire()
        task = asyncio.ensure_future(self._carry_out(name, actions, slot))
        tasks.add(task)

        def done(t: asyncio.Task) -> None:
            tasks.discard(t)
            sem.release()

        task.add_done_callback(done)

    async def _carry_out(self, name: str, actions: list[Action], slot: list) -> None:
        try:
            async with self.locks.hold(name) if self.locks else nullcontext():
                for i, action in enumerate(actions):
                    try:
                        outcome = await self._one(action)
                    except Exception as e:  # RegionError, Unresolved, or a bug: reported, never lost
                        self.report.failed(action, e)
                        for rest in actions[i + 1 :]:  # planned on the first one's success
                            self.report.outcome(rest, "skipped")
                        break
                    self.report.outcome(action, outcome)
                    if outcome == "done" and action.deletes and not await self._removed(action):
                        for rest in actions[i + 1 :]:  # nothing more is removed unrecorded
                            self.report.outcome(rest, "skipped")
                        break
        finally:
            self.watermark.finish(slot)

    async def _removed(self, action: Action) -> bool:
        """Tell ``on_removed`` (the audit record of what was removed); False, and the walk stops, if it failed."""
        if self.on_removed is None:
            return True
        assert action.dst is not None
        try:
            await self.on_removed(action, self.regions[action.dst].name)
        except Exception as e:
            self.report.failed(
                None, f"the removal's audit record was not written ({type(e).__name__})", name=action.name
            )
            self.stop("audit-failed")
            return False
        return True

    async def _one(self, action: Action) -> str:
        if action.kind == "conflict":
            raise Unresolved("the same version is a tombstone in one region and an object in the other")
        if action.kind == "repair":
            return await self._repair(action)
        assert action.dst is not None  # every kind but repair and conflict names the region that changes
        if action.src is not None:
            return await self._copy(action, action.src, action.dst)
        return await self._delete(action)

    # -- the actions ----------------------------------------------------------------------

    async def _copy(self, action: Action, src: Side, dst: Side) -> str:
        """Copy ``src``'s replica over ``dst``'s if both are still what the plan saw."""
        want_src, want_dst = action.entry(src), action.entry(dst)
        current = None
        if want_dst is not None:
            current = await _head(self.regions[dst], action.name)
            if not _matches(current, want_dst):
                return "skipped"
        try:
            info = await copy_over(
                self.regions[src],
                self.regions[dst],
                action.name,
                over=current,
                expect=lambda info: _matches(info, want_src),
            )
        except PreconditionFailed:
            return "skipped"  # written meanwhile: a racing write, which wins
        if info is None:
            return "skipped"
        self.report.bytes_copied += info.size
        return "done"

    async def _delete(self, action: Action) -> str:
        assert action.dst is not None
        region = self.regions[action.dst]
        current = await _head(region, action.name)
        if current is None or not _matches(current, action.entry(action.dst)):
            return "skipped"
        try:
            await region.delete(action.name, if_match=current.etag)
        except PreconditionFailed:
            return "skipped"  # rewritten since the re-check: that write stays
        return "done"

    async def _verify(self, side: Side, action: Action) -> str:
        """Read one replica through: ``good``, ``corrupt``, or ``changed`` since the plan."""
        try:
            info, stream = await self.regions[side].get(action.name)
        except NotFound:
            return "changed"
        try:
            if not _matches(info, action.entry(side)):
                return "changed"
            async for _ in stream:
                pass
        except Corrupt:
            return "corrupt"
        finally:
            await stream.aclose()
        return "good"

    async def _repair(self, action: Action) -> str:
        """Same version, different digests: copy the replica that verifies over the one that does not."""
        a, b = await asyncio.gather(self._verify("a", action), self._verify("b", action))
        if "changed" in (a, b):
            return "skipped"
        if a == b == "good":
            raise Unresolved(
                "both replicas verify but their digests differ; a read (which decrypts) tells which is right"
            )
        if a == b == "corrupt":
            raise Unresolved("neither replica matches its digest")
        good: Side = "a" if a == "good" else "b"
        bad: Side = "b" if good == "a" else "a"
        return await self._copy(action, good, bad)
