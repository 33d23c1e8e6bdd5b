"""One nightly run of one partition: lease, start checks, resume point, the walk, the checkpoint.

* The lease (in the journal database, keyed by the run's scope) makes sure two
  runs of the same partition never overlap; it is renewed every third of its
  time-to-live while the run lasts, and a runner that died lets it expire. A
  run that loses it (it could not renew in time, and another runner took
  over) stops after its running tasks.
* A dry run changes nothing: it takes no lease and leaves the checkpoint alone.
* Both regions must answer before anything starts (a head of a probe name);
  otherwise the run could not start at all, which the CLI reports with exit 2.
* The checkpoint is saved every few seconds and when a run stops early, and
  cleared when a run walks its whole scope; ``resume`` starts after it.
* A run that walked its whole scope (the first partition's, when partitioned)
  then sweeps orphan segments under its prefix in a region that has them
  (Swift: see ``SwiftRegion.sweep_segments``); the report counts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass

from regions import Region, RegionError
from replicator.health.reach import PROBE_NAME, reach
from replicator.journal import Coordination
from replicator.reconcile.executor import Reconciler
from replicator.reconcile.partition import ROOT, scope_prefixes
from replicator.reconcile.planner import Action
from replicator.reconcile.report import Report
from replicator.replication import NameLocks
from replicator.retention import DAY_MS

log = logging.getLogger("replicator.reconcile")


class CannotRun(Exception):
    """The run could not start: the lease is held, a region is down, the options are wrong."""


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    concurrency: int = 16
    max_delete: int | None = None
    resume: bool = False
    prefix: str = ROOT
    partition: tuple[int, int] = (1, 1)
    grace_days: float = 7.0
    lease_ttl: float = 300.0
    checkpoint_every: float = 2.0

    @property
    def scope(self) -> str:
        i, n = self.partition
        return f"{self.prefix}@{i}/{n}"


class DestroyedKeys:
    """``dek_id in destroyed`` over a key provider, with a bounded cache (one provider call per DEK)."""

    def __init__(self, is_destroyed: Callable[[str], bool], size: int = 65_536):
        self._ask = is_destroyed
        self._seen: dict[str, bool] = {}
        self._size = size

    def __contains__(self, dek_id: object) -> bool:
        if not isinstance(dek_id, str):
            return False
        answer = self._seen.get(dek_id)
        if answer is None:
            if len(self._seen) >= self._size:
                self._seen.clear()
            answer = self._seen[dek_id] = self._ask(dek_id)
        return answer


async def probe(region: Region, timeout: float = 30.0) -> None:
    """Raise ``CannotRun`` unless ``region`` answers a head."""
    try:
        await asyncio.wait_for(reach(region, PROBE_NAME), timeout)
    except (TimeoutError, RegionError) as e:
        raise CannotRun(f"region {region.name!r} is not available: {type(e).__name__}: {e}") from e


async def run_job(
    a: Region,
    b: Region,
    journal: Coordination | None,
    *,
    options: Options,
    owner: str,
    retention: Mapping[str, int | None],
    destroyed: Container[str],
    keep: Mapping[str, int] | None = None,
    now_ms: int | None = None,
    locks: NameLocks | None = None,
    on_progress: Callable[[str, Report], None] | None = None,
    started: Callable[[Reconciler], None] = lambda r: None,
    on_removed: Callable[[Action, str], Awaitable[None]] | None = None,
) -> Report:
    """Run ``options``' scope once; ``CannotRun`` if it cannot start. ``journal`` may be None for a dry run."""
    try:
        prefixes = scope_prefixes(options.prefix, *options.partition)
    except ValueError as e:
        raise CannotRun(str(e)) from None
    if journal is None and not options.dry_run:
        raise CannotRun("a journal is needed for the lease and the checkpoint")
    leased = None if options.dry_run else journal  # a dry run takes no lease and leaves no checkpoint
    key = f"reconcile:{options.scope}"
    if leased is not None and not await leased.acquire_lease(key, owner, options.lease_ttl):
        raise CannotRun(f"another runner holds the lease on {options.scope}")
    try:
        await asyncio.gather(probe(a), probe(b))
        after = await journal.load_checkpoint(key) if options.resume and journal is not None else None
        save = None if leased is None else functools.partial(leased.save_checkpoint, key)

        reconciler = Reconciler(
            a,
            b,
            now_ms=now_ms if now_ms is not None else time.time_ns() // 1_000_000,
            retention=retention,
            destroyed=destroyed,
            grace_ms=int(options.grace_days * DAY_MS),
            keep=keep,
            concurrency=options.concurrency,
            dry_run=options.dry_run,
            max_delete=options.max_delete,
            locks=locks,
            on_checkpoint=save,
            checkpoint_every=options.checkpoint_every,
            on_progress=on_progress,
            on_removed=on_removed,
        )
        reconciler.report.scope = {
            "prefix": options.prefix,
            "partition": "{}/{}".format(*options.partition),
            "prefixes": len(prefixes),
            "resumed_after": after,
        }
        started(reconciler)
        keeper = (
            asyncio.ensure_future(_keep_lease(leased, key, owner, options.lease_ttl, reconciler))
            if leased is not None
            else None
        )
        try:
            report = await reconciler.run(prefixes, after=after)
        finally:
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
        if leased is not None:
            if report.stopped is None:
                await leased.clear_checkpoint(key)
                if options.partition[0] == 1:
                    report.segments = await sweep_segments((a, b), options.prefix)
            elif report.checkpoint is not None:
                await leased.save_checkpoint(key, report.checkpoint)
        return report
    finally:
        if leased is not None:
            await leased.release_lease(key, owner)


async def sweep_segments(regions, prefix: str) -> dict[str, dict]:
    """Each region's orphan-segment sweep under ``prefix``, for those that have one: what it did."""
    done = {}
    for region in regions:
        sweep = region.features.sweep_segments
        if sweep is None:
            continue
        try:
            done[region.name] = dataclasses.asdict(await sweep(key_prefix=prefix))
        except RegionError as e:
            log.warning("segment sweep failed", extra={"region": region.name, "error": str(e)})
            done[region.name] = {"error": str(e)}
    return done


async def _keep_lease(journal: Coordination, key: str, owner: str, ttl: float, reconciler: Reconciler) -> None:
    """Renew every ``ttl / 3``; stop the run once the lease is gone or cannot have been kept."""
    last_ok = time.monotonic()
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            if not await journal.renew_lease(key, owner, ttl):
                reconciler.stop("lease-lost")
                return
            last_ok = time.monotonic()
        except Exception as e:  # the journal itself failed: keep trying while the lease lasts
            log.warning("cannot renew the reconcile lease", extra={"error": type(e).__name__})
            if time.monotonic() - last_ok >= ttl:
                reconciler.stop("lease-lost")
                return
