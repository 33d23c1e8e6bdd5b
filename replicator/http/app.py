"""Wiring: build the aiohttp application from a :class:`~replicator.config.Config`.

Everything the service holds open (regions, journal, keyring, audit log)
comes from one :class:`~replicator.runtime.Runtime` inside one
``cleanup_ctx``; the workers and erasure sweeps built on them are closed
first, then the resources, in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from regions import Region
from replicator.config import Config
from replicator.health.readiness import readiness
from replicator.http import auth, handlers
from replicator.observe.lag import refresh_lag
from replicator.observe.metrics import Metrics
from replicator.observe.unauthenticated import UnauthenticatedTally
from replicator.paths.erasure import Eraser
from replicator.paths.ledger import ErasureLedger, LedgerUnavailable, reapply_audited, reapply_until_read
from replicator.replication import Workers
from replicator.replication.audit_ship import AuditShipper
from replicator.retention import keep_of
from replicator.runtime import Runtime, policy_of
from replicator.tokens import TokenStoreError
from replicator.tokens.index import TokenIndex

log = logging.getLogger("replicator.http.app")
SHUTDOWN_SHIPPING_TIMEOUT = 10.0  # seconds the last audit shipping round may take at shutdown
AUDIT_SHIPPER = web.AppKey("audit_shipper", AuditShipper)  # the background task shipping this node's audit chain


def build_app(
    config: Config,
    *,
    now_ms: Callable[[], int] | None = None,
    workers_idle_wait: float = 1.0,
    unauthenticated_interval: float = 60.0,
    wrap_region: Callable[[Region], Region] = lambda region: region,
) -> web.Application:
    """The service for ``config``; tests inject a clock and wrap regions (fault injection).
    ``unauthenticated_interval``: seconds between the audit summaries of 401s (``observe.unauthenticated``)."""
    app = web.Application(middlewares=[handlers.errors_middleware])
    metrics = Metrics()
    app[handlers.METRICS] = metrics
    policy = policy_of(config)
    app[handlers.POLICY] = policy
    tally = UnauthenticatedTally(metrics, interval=unauthenticated_interval)
    app[handlers.UNAUTHENTICATED] = tally

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with Runtime(config, policy=policy, metrics=metrics, wrap_region=wrap_region) as runtime:
            regions, journal = runtime.regions, runtime.journal
            keys = await runtime.keys()
            audit = await runtime.audit()
            locks = await runtime.locks(node=True)  # claims the node id: a second node with it stops here
            workers = Workers(
                journal,
                regions,
                locks,
                metrics,
                owner=f"{config.node_id}-{os.getpid()}",
                concurrency=config.limits.region_concurrency,
                idle_wait=workers_idle_wait,
                lease=config.limits.journal_lease,
                keep_days=keep_of(policy),
            )
            # Before any traffic, so no key a restored backup brought back is served; while no region
            # can be read (they are down: nothing is served anyway), it is retried in the background.
            ledger = ErasureLedger(regions, keys)
            try:
                await reapply_audited(ledger, audit)
            except LedgerUnavailable:
                retrying = asyncio.ensure_future(reapply_until_read(ledger, audit))
                runtime.push(lambda: _cancel(retrying))
            eraser = Eraser(regions, journal, keys, audit=audit)
            runtime.push(eraser.close)
            app[handlers.ERASER] = eraser
            app[handlers.SERVICE] = await runtime.service(locks=locks, now_ms=now_ms, on_journal=workers.kick)
            kek_service = runtime.kek_service
            shipper = AuditShipper(
                config.node_id, audit, regions, keys.audit_key(), interval=config.audit_ship_interval, metrics=metrics
            )
            app[AUDIT_SHIPPER] = shipper
            app[handlers.READINESS] = lambda: readiness(regions, keys, journal, audit, kek_service, shipper.state)
            await _watch_tokens(app, runtime, metrics)
            worker_task = asyncio.ensure_future(workers.run())
            lag_task = asyncio.ensure_future(refresh_lag(metrics, journal, regions))  # the SLO gauges

            runtime.push(lambda: _cancel(worker_task))
            runtime.push(lambda: _cancel(lag_task))
            shipping = asyncio.ensure_future(shipper.run())
            runtime.push(lambda: _last_round(shipping, shipper))
            summaries = asyncio.ensure_future(tally.run(audit))

            async def last_summary() -> None:  # what was counted since the last one, before the log closes
                await _cancel(summaries)
                await tally.flush(audit)

            runtime.push(last_summary)
            await eraser.resume()
            yield

    app.cleanup_ctx.append(resources)
    handlers.add_routes(app)
    return app


async def _watch_tokens(app: web.Application, runtime: Runtime, metrics: Metrics) -> None:
    """The token store's tokens, re-read every second (``replicator.tokens.index``). A store that
    does not answer at start leaves the node serving the policy file's tokens, and 503 to store tokens,
    until it does."""
    index = TokenIndex(await runtime.tokens(), metrics.registry)
    try:
        await index.refresh()
    except TokenStoreError as e:
        log.warning("token store not read at start", extra={"error": str(e)})
    app[auth.TOKENS] = index
    polling = asyncio.ensure_future(index.run())
    runtime.push(lambda: _cancel(polling))


async def _last_round(shipping: asyncio.Future, shipper: AuditShipper) -> None:
    """At shutdown, ship what was appended since the last round, so a node taken down on purpose
    leaves its whole chain in both regions (bounded: a region that does not answer cannot hold the stop)."""
    await _cancel(shipping)
    state = await shipper.ship_within(SHUTDOWN_SHIPPING_TIMEOUT)
    if state != "ok":  # the regions down or slow: the next start ships it
        log.warning("audit shipping at shutdown did not finish", extra={"error": state})


async def _cancel(task: asyncio.Future) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
