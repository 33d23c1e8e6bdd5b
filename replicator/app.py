"""Wiring: build the aiohttp application from a :class:`~replicator.config.Config`.

Everything the service holds open (regions, journal, keyring, audit log,
workers, erasure sweeps) is opened and closed in one ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from aiohttp import web

from keys import AuditLog, KeyFile, LocalKeyring, Passphrase, Principal, load_policy
from regions import NotFound, Region, RegionError, RetryPolicy

from . import api
from .config import AzureRegionConfig, Config, LocalRegionConfig, SwiftRegionConfig
from .erasure import Eraser
from .hlc import Clock
from .journal import open_journal
from .metrics import Metrics
from .observed import ObservedRegion
from .replication import NameLocks, Workers
from .service import Service

PROBE_NAME = "health/probe"


def open_region(name: str, cfg, retry: RetryPolicy) -> Region:
    """The driver for one configured region."""
    if isinstance(cfg, LocalRegionConfig):
        from regions.local import LocalRegion

        return LocalRegion(cfg.path, name=name)
    if isinstance(cfg, AzureRegionConfig):
        from regions.azure import AzureRegion

        secret = cfg.secret().get_secret_value()
        if cfg.connection_string_env:
            return AzureRegion(cfg.container, connection_string=secret, prefix=cfg.prefix, name=name,
                               retry=retry, block_size=cfg.block_bytes)
        return AzureRegion(cfg.container, account_url=cfg.account_url, credential=secret, prefix=cfg.prefix,
                           name=name, retry=retry, block_size=cfg.block_bytes)
    if isinstance(cfg, SwiftRegionConfig):
        from regions.swift import SwiftRegion

        return SwiftRegion(cfg.cloud, cfg.container, name=name, clouds_yaml=cfg.clouds_yaml, prefix=cfg.prefix,
                           retry=retry, segment_size=cfg.segment_bytes)
    raise ValueError(f"unknown region kind for {name!r}")


def open_keyring(config: Config) -> LocalKeyring:
    if config.keys.key_file is not None:
        kek = KeyFile(config.keys.key_file)
    else:
        secret = os.environ.get(config.keys.passphrase_env or "")
        if not secret:
            raise ValueError(f"environment variable {config.keys.passphrase_env} (the keyring passphrase) is not set")
        kek = Passphrase(secret)
    return LocalKeyring.open(config.keys.keyring, kek, create=True)


def build_app(config: Config, *, now_ms: Callable[[], int] | None = None, workers_idle_wait: float = 1.0,
              wrap_region: Callable[[Region], Region] = lambda region: region) -> web.Application:
    """The service for ``config``; tests inject a clock and wrap regions (fault injection)."""
    app = web.Application(middlewares=[api.errors_middleware])
    metrics = Metrics()
    app[api.METRICS] = metrics
    policy = load_policy(config.policy)
    for p in config.principals:
        policy = policy.with_principal(Principal(p.name, p.token_sha256, frozenset(p.scopes)))
    app[api.POLICY] = policy

    async def resources(app: web.Application):
        retry = RetryPolicy(attempts=config.limits.retry_attempts, timeout=config.limits.request_timeout)
        regions = {name: ObservedRegion(wrap_region(open_region(name, cfg, retry)), metrics)
                   for name, cfg in config.regions.items()}
        keyring = await asyncio.to_thread(open_keyring, config)
        journal = open_journal(config.journal)
        audit = await asyncio.to_thread(AuditLog.open, config.audit_log)
        locks = NameLocks()
        workers = Workers(journal, regions, locks, metrics, owner=f"{config.node_id}-{os.getpid()}",
                          concurrency=config.limits.region_concurrency, idle_wait=workers_idle_wait,
                          lease=config.limits.journal_lease)
        eraser = Eraser(regions, journal)
        app[api.ERASER] = eraser
        app[api.SERVICE] = Service(policy=policy, keys=keyring, regions=regions, journal=journal, audit=audit,
                                   metrics=metrics, clock=Clock(config.node_id),
                                   read_preference=config.read_preference, locks=locks,
                                   max_object_bytes=config.limits.max_object_bytes, now_ms=now_ms,
                                   straggler_grace=config.limits.straggler_grace,
                                   on_journal=workers.kick)
        app[api.READINESS] = lambda: readiness(regions, keyring, journal, audit)
        worker_task = asyncio.ensure_future(workers.run())
        await eraser.resume()
        try:
            yield
        finally:
            worker_task.cancel()
            await asyncio.gather(worker_task, return_exceptions=True)
            await eraser.close()
            for region in regions.values():
                await region.close()
            await journal.close()
            audit.close()

    app.cleanup_ctx.append(resources)
    api.add_routes(app)
    return app


async def readiness(regions: dict[str, Region], keyring, journal, audit) -> dict[str, str]:
    """Each dependency the service needs to take traffic: "ok" or what is wrong."""
    async def region_ok(region: Region) -> str:
        try:
            await asyncio.wait_for(region.head(PROBE_NAME), 5)
        except NotFound:
            return "ok"  # the store answered
        except (RegionError, asyncio.TimeoutError) as e:
            return f"unavailable: {type(e).__name__}"
        return "ok"

    async def journal_ok() -> str:
        try:
            await journal.backlog()
            return "ok"
        except Exception as e:  # any failure means not ready; say which kind
            return f"unavailable: {type(e).__name__}"

    def keyring_ok() -> str:
        try:
            keyring.check()
            return "ok"
        except Exception as e:
            return f"locked: {type(e).__name__}"

    states = await asyncio.gather(*(region_ok(r) for r in regions.values()), journal_ok())
    checks = {f"region:{name}": s for name, s in zip(regions, states)}
    checks["journal"] = states[-1]
    checks["keyring"] = await asyncio.to_thread(keyring_ok)
    checks["audit"] = audit.problem() or "ok"
    return checks
