"""The Runtime: every resource a process holds, built from the config and closed in reverse order.

The server and every command open what they need through one
:class:`Runtime` (an ``AsyncExitStack``, as aiohttp's ``cleanup_ctx`` and
Python's ``contextlib`` teach): regions (always observed, so a command's
region calls are logged and measured as the server's are),
the journal, the key provider and the audit log. Each is built on first
use, at most once, and its close is registered the moment it exists, so a
resource that fails to open never leaks the ones opened before it, and
leaving the ``async with`` closes them all, last opened first, whatever
raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from keys import AuditLog, BarbicanKek, KeyFile, LocalKeyring, Passphrase, Policy, Principal
from keys.provider import KekSource, KeyProvider, ServiceKek
from keys.receipts import SigningKey
from keys.sin_containers import ScanLimits
from regions import PortableRegion, Region, RetryPolicy
from replicator.config import AzureRegionConfig, Config, LocalRegionConfig, RegionConfig, SwiftRegionConfig
from replicator.hlc import Clock
from replicator.journal import Journal, is_postgresql, open_journal
from replicator.keystore import PgKeyStore
from replicator.observe.audit import CountedAuditLog
from replicator.observe.metrics import Metrics
from replicator.observe.regions import RegionLog
from replicator.paths.service import Service
from replicator.replication.cluster import ClusterSession
from replicator.replication.locks import Locks, NameLocks
from replicator.residency import policy_for
from replicator.tokens import TokenStore, open_token_store


def open_region(name: str, cfg: RegionConfig, retry: RetryPolicy) -> PortableRegion:
    """The region for one configured store, unobserved (the Runtime sets its observer)."""
    if isinstance(cfg, LocalRegionConfig):
        from regions.local import LocalRegion

        return LocalRegion(cfg.path, name=name)
    if isinstance(cfg, AzureRegionConfig):
        from regions.azure import AzureRegion

        common: dict[str, Any] = {"prefix": cfg.prefix, "name": name, "retry": retry, "block_size": cfg.block_bytes}
        if cfg.ca_file is not None:
            common["ca_file"] = str(cfg.ca_file)
        if cfg.entra is not None:
            from regions.azure.credential import entra_credential

            token = entra_credential(
                cfg.entra,
                tenant_id=cfg.tenant_id,
                client_id=cfg.client_id,
                client_secret_file=cfg.client_secret_file,
                token_file=cfg.token_file,
                authority=cfg.authority,
                ca_file=common.get("ca_file"),
            )
            return AzureRegion(cfg.container, account_url=cfg.account_url, credential=token, **common)
        secret = cfg.secret()
        assert secret is not None  # a key or a connection string, when not Entra ID
        if cfg.connection_string_env:
            return AzureRegion(cfg.container, connection_string=secret.get_secret_value(), **common)
        return AzureRegion(cfg.container, account_url=cfg.account_url, credential=secret.get_secret_value(), **common)
    if isinstance(cfg, SwiftRegionConfig):
        from regions.swift import SwiftRegion

        return SwiftRegion(
            cfg.cloud,
            cfg.container,
            name=name,
            clouds_yaml=cfg.clouds_yaml,
            prefix=cfg.prefix,
            retry=retry,
            segment_size=cfg.segment_bytes,
        )
    raise ValueError(f"unknown region kind for {name!r}")


def kek_source(config: Config) -> KekSource:
    """The KEK source the config names: a key file, a passphrase variable, or a Barbican secret."""
    if config.keys.key_file is not None:
        return KeyFile(config.keys.key_file)
    if config.keys.barbican_secret is not None:
        return BarbicanKek(
            config.keys.barbican_secret, cloud=config.keys.barbican_cloud, clouds_yaml=config.keys.clouds_yaml
        )
    secret = os.environ.get(config.keys.passphrase_env or "")
    if not secret:
        raise ValueError(f"environment variable {config.keys.passphrase_env} (the keyring passphrase) is not set")
    return Passphrase(secret)


def open_keyring(config: Config, *, create: bool = True, kek: KekSource | None = None) -> LocalKeyring | PgKeyStore:
    """The configured key provider, unlocked by ``kek`` (default: the KEK source the config names): the
    local keyring file (one node) or the PostgreSQL key store (a cluster). Blocks (scrypt, file or
    database I/O, the key service): call it in a thread from a loop."""
    kek = kek or kek_source(config)
    if config.keys.store is not None:
        return PgKeyStore.open(config.keys.store, kek, create=create)
    assert config.keys.keyring is not None  # the config holds one of the two
    return LocalKeyring.open(config.keys.keyring, kek, create=create)


def policy_of(config: Config) -> Policy:
    """The configured policy file, the config's regions checked against it (``policy_for``: a config
    built in code does not skip the residency rule), with the config's principals added."""
    policy = policy_for(config)
    for p in config.principals:
        policy = policy.with_principal(
            Principal(p.name, p.token_sha256, frozenset(p.scopes), p.client_subject, p.client_san)
        )
    return policy


class Runtime:
    """What one process holds open, built from ``config`` on first use.

    ``retry`` overrides the config's region retry policy (health probes try
    once); ``wrap_region`` goes between a driver and the observed layer
    (tests inject faults there); ``close_timeout`` bounds each close (a
    health check must not hang on a region that hangs).
    """

    def __init__(
        self,
        config: Config,
        *,
        policy: Policy | None = None,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        wrap_region: Callable[[Region], Region] = lambda region: region,
        close_timeout: float | None = None,
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.retry = retry or RetryPolicy(attempts=config.limits.retry_attempts, timeout=config.limits.request_timeout)
        self._observer = RegionLog(self.metrics)
        self.order = [config.read_preference] + [r for r in config.regions if r != config.read_preference]
        self._wrap_region = wrap_region
        self._close_timeout = close_timeout
        self._stack = AsyncExitStack()
        self._regions: dict[str, Region] = {}
        self._journal: Journal | None = None
        self._keys: KeyProvider | None = None
        self.kek_service: ServiceKek | None = None  # the key service the KEK came from, for readiness
        self._audit: AuditLog | None = None
        self._locks: Locks | None = None
        self._tokens: TokenStore | None = None
        self._policy = policy
        self._receipt_key: SigningKey | None = None

    async def __aenter__(self) -> Runtime:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(kind, error, tb)  # the closes suppress nothing

    def _on_close(self, close: Callable[[], Awaitable[Any]]) -> None:
        if self._close_timeout is None:
            self._stack.push_async_callback(close)
            return
        timeout = self._close_timeout

        async def bounded() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), timeout)

        self._stack.push_async_callback(bounded)

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = policy_of(self.config)
        return self._policy

    def region(self, name: str) -> Region:
        """One configured region, observed."""
        if name not in self._regions:
            store = open_region(name, self.config.regions[name], self.retry)
            store.observer = self._observer
            region = self._wrap_region(store)
            self._on_close(region.close)
            self._regions[name] = region
        return self._regions[name]

    @property
    def regions(self) -> dict[str, Region]:
        """Every configured region, observed, in read-preference order."""
        return {name: self.region(name) for name in self.order}

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = open_journal(self.config.journal)
            self._on_close(self._journal.close)
        return self._journal

    async def keys(self, *, create: bool = True) -> KeyProvider:
        """The key provider (the keyring file or the key store), unlocked in a worker thread."""
        if self._keys is None:
            kek = kek_source(self.config)
            keyring = await asyncio.to_thread(open_keyring, self.config, create=create, kek=kek)
            self.kek_service = kek if isinstance(kek, ServiceKek) else None
            self._keys = keyring
            self._on_close(lambda: asyncio.to_thread(keyring.close))  # a store's close waits for its pool
        return self._keys

    async def tokens(self) -> TokenStore:
        """The token store beside the journal (its SQLite file or PostgreSQL database, its own tables)."""
        if self._tokens is None:
            store = await asyncio.to_thread(open_token_store, self.config.journal)
            self._tokens = store
            self._on_close(store.close)
        return self._tokens

    async def audit(self) -> AuditLog:
        if self._audit is None:
            key = (await self.keys()).audit_key()  # the chain is keyed: the key provider first
            audit = await asyncio.to_thread(CountedAuditLog.counting, self.config.audit_log, self.metrics, key)
            self._audit = audit
            self._stack.callback(audit.close)
        return self._audit

    def receipt_key(self) -> SigningKey | None:
        """The erasure receipts' signing key the config names (None: receipts go unsigned)."""
        if self._receipt_key is None and self.config.erasure_receipt_key is not None:
            self._receipt_key = SigningKey.load(self.config.erasure_receipt_key)
        return self._receipt_key

    async def service(self, *, audit: AuditLog | None = None, **options: Any) -> Service:
        """The service on these resources and the config's limits; ``audit`` replaces the log (the CLI's
        erase, when the running server holds it), ``options`` go to :class:`Service` (locks, a clock)."""
        limits = self.config.limits
        options.setdefault("locks", await self.locks())
        return Service(
            policy=self.policy,
            keys=await self.keys(),
            regions=self.regions,
            journal=self.journal,
            audit=audit if audit is not None else await self.audit(),
            metrics=self.metrics,
            clock=Clock(self.config.node_id),
            read_preference=self.config.read_preference,
            max_object_bytes=limits.max_object_bytes,
            straggler_grace=limits.straggler_grace,
            no_progress_timeout=limits.no_progress_timeout,
            receipt_key=self.receipt_key(),
            scan_limits=ScanLimits(
                limits.scan_max_expansion_ratio, limits.scan_max_expanded_bytes, limits.scan_max_depth
            ),
            **options,
        )

    async def locks(self, *, node: bool = False) -> Locks:
        """The name locks: the cluster's (names held across nodes) when the journal is shared on
        PostgreSQL, else this process's own. ``node``: this process is the node (``serve``) and
        claims the config's node id; commands run beside it do not."""
        if self._locks is None:
            if is_postgresql(self.config.journal):
                session = ClusterSession(self.config.journal, self.config.node_id, claim=node)
                await session.open()
                self._on_close(session.close)
                self._locks = session
            else:
                self._locks = NameLocks()
        return self._locks

    def push(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Close something the caller built on these resources (workers, sweeps) before them."""
        self._stack.push_async_callback(close)
