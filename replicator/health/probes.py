"""`replicator health`: probe everything the service depends on and grade it OK / WARN / CRIT.

Theory of operation
-------------------
Each region: authenticate and reach the container (a HEAD of a probe name
that does not exist yet: Swift fetches a Keystone token, Azure signs with the
account key, and both must answer NotFound), then write, read back, verify
and delete a probe object under the reserved prefix ``health/`` (a name the
service never uses: its names start ``v1/``), then list that prefix; every
step is timed. A probe left behind by an earlier run that timed out is
removed by the list step once it is an hour old.

The key provider: the keyring unlocks (its KEK opens the check value and
unwraps the index key), and an AEAD seal/open round trip works. A KEK from a
key service (Barbican): the service answers for the secret (its metadata, not
the key), timed; a service that is down fails the keyring check already, as
it would fail a restart. The audit
log: present, writable, and its hash chain verifies from the last checkpoint
this command saved in the journal (the whole file the first time; a record
at the checkpoint that is gone or changed is CRIT: the log was cut or
rewritten). The journal: reachable, backlog size, age of the oldest row.

Every step runs under the probe timeout, and the command never waits for a
worker thread stuck in a hung call (:func:`run`, :func:`exit_now`): a region
that hangs is CRIT within the timeout, never a hung command.

Grades: CRIT when something is down (a region, the keyring, the audit chain,
the journal); WARN when it works but is slow or behind (latency, backlog,
oldest row over the thresholds of ``[health]`` in the config). Exit codes
follow Nagios: 0 OK, 1 WARN, 2 CRIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keys import KeyringError
from keys.audit import Checkpoint
from keys.audit import verify as verify_audit
from keys.provider import KeyProvider, ServiceKek
from keys.stream import decrypt_bytes, encrypt_bytes
from regions import Region, RegionError, RetryPolicy
from replicator.config import Config
from replicator.health.reach import PROBE_PREFIX, reach
from replicator.paths.ledger import ErasureLedger, LedgerUnavailable
from replicator.runtime import Runtime

OK, WARN, CRIT = "OK", "WARN", "CRIT"
EXIT = {OK: 0, WARN: 1, CRIT: 2}
_RANK = {OK: 0, WARN: 1, CRIT: 2}
STALE_PROBE_S = 3600.0  # a probe this old was left by a run that timed out: remove it
_MAX_DETAIL = 300  # an SDK message can be long; a table cell should not be


@dataclass(frozen=True)
class Thresholds:
    probe_timeout: float = 10.0  # seconds for one probe step
    latency_warn_ms: float = 2000.0  # a region step slower than this is WARN
    backlog_warn: int = 1000  # pending journal rows
    oldest_warn_s: float = 3600.0  # age of the oldest pending row

    @classmethod
    def from_config(cls, health, **overrides) -> Thresholds:
        """The config's ``[health]`` with the command line's non-None values on top."""
        values = {k: getattr(health, k) for k in ("probe_timeout", "latency_warn_ms", "backlog_warn", "oldest_warn_s")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class Check:
    component: str  # "region:ca", "keyring", "audit", "journal", "kek_service"
    status: str
    detail: str
    figures: dict[str, float | int] = field(default_factory=dict)


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=_RANK.__getitem__, default=OK)


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:_MAX_DETAIL]


async def _timed(step: str, coro, timeout: float, figures: dict) -> object:
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(coro, timeout)
    finally:
        figures[f"{step}_ms"] = round((time.perf_counter() - started) * 1000, 1)


# -- regions -------------------------------------------------------------------------------


async def check_region(name: str, region: Region, limits: Thresholds, node: str = "health") -> Check:
    figures: dict[str, float | int] = {}
    probe = f"{PROBE_PREFIX}{node}-{secrets.token_hex(6)}"
    body = secrets.token_bytes(1024)
    component = f"region:{name}"
    step, stored = "auth", False
    try:
        await _timed("auth", reach(region, probe), limits.probe_timeout, figures)
        step = "put"
        await _timed("put", region.put(probe, body, {"probe": "1"}), limits.probe_timeout, figures)
        stored, step = True, "get"

        async def read_back() -> bytes:
            _, stream = await region.get(probe)
            return b"".join([c async for c in stream])

        got = await _timed("get", read_back(), limits.probe_timeout, figures)
        assert isinstance(got, bytes)
        if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
            await _remove(region, probe, limits)
            return Check(component, CRIT, "verify: the probe object came back different", figures)
        step = "delete"
        await _timed("delete", region.delete(probe), limits.probe_timeout, figures)
        stored, step = False, "list"
        stale: list[str] = []

        async def list_probes() -> None:
            now = datetime.now(UTC)
            async for info in region.list(PROBE_PREFIX):
                if info.modified is not None and (now - info.modified).total_seconds() > STALE_PROBE_S:
                    stale.append(info.name)

        await _timed("list", list_probes(), limits.probe_timeout, figures)
        for old in stale[:100]:  # a bounded clean-up; the next run takes the rest
            await _remove(region, old, limits)
        if stale:
            figures["stale_probes_removed"] = min(len(stale), 100)
    except TimeoutError:
        # A hung region would hang the clean-up too: the next healthy run removes the probe.
        return Check(component, CRIT, f"{step}: no answer within {limits.probe_timeout:g}s", figures)
    except Exception as e:  # RegionError, or an SDK or config failure the driver did not map: all CRIT
        if stored:
            await _remove(region, probe, limits)
        return Check(component, CRIT, f"{step}: {_why(e)}", figures)
    slow = [k for k, v in figures.items() if k.endswith("_ms") and v > limits.latency_warn_ms]
    if slow:
        return Check(component, WARN, "slow: " + ", ".join(f"{k}={figures[k]:g}" for k in slow), figures)
    return Check(component, OK, "auth/put/get/verify/delete/list", figures)


async def _remove(region: Region, name: str, limits: Thresholds) -> None:
    with contextlib.suppress(RegionError, asyncio.TimeoutError):
        await asyncio.wait_for(region.delete(name), limits.probe_timeout)


# -- keyring, audit log, journal --------------------------------------------------------------


def check_keyring(keyring) -> Check:
    try:
        keyring.check()  # the KEK opens its check value and unwraps the index key
        # An AEAD seal/open round trip (the data path's streaming format) with a throwaway key.
        key, ad, plain = os.urandom(32), b"replicator/health", os.urandom(64)
        if decrypt_bytes(encrypt_bytes(plain, key, "health-probe", ad), key, ad) != plain:
            return Check("keyring", CRIT, "AEAD round trip returned different bytes")
    except Exception as e:  # any failure to unlock or unwrap is what this check reports
        return Check("keyring", CRIT, _why(e))
    rotation = getattr(keyring, "unfinished_rotation", None)
    if rotation is not None:  # the previous KEK still opens the keyring until --finish
        return Check(
            "keyring",
            WARN,
            f"KEK rotation {rotation[0]} -> {rotation[1]} not finished: once every "
            f"process runs on the new KEK, run `replicator keys rotate --finish`",
        )
    return Check("keyring", OK, "unlocks; KEK check and index key unwrap; AEAD round trip")


async def check_kek_service(service: ServiceKek, limits: Thresholds) -> Check:
    figures: dict[str, float | int] = {}
    try:
        # The thread ends by the request's own timeout; wait_for only stops waiting for it.
        probe = asyncio.to_thread(service.probe, limits.probe_timeout)
        await _timed("probe", probe, limits.probe_timeout + 1, figures)
    except TimeoutError:
        return Check("kek_service", CRIT, f"no answer within {limits.probe_timeout:g}s", figures)
    except Exception as e:  # KeyServiceError names the secret and what failed
        return Check("kek_service", CRIT, _why(e), figures)
    if figures["probe_ms"] > limits.latency_warn_ms:
        return Check("kek_service", WARN, f"slow: probe_ms={figures['probe_ms']:g}", figures)
    return Check("kek_service", OK, f"{service.kind} secret {service.ref} answers (metadata only)", figures)


def check_audit(path: Path, since: Checkpoint | None = None) -> tuple[Check, Checkpoint | None]:
    """Grade the audit log at ``path``, verifying from ``since`` (None: from the start).
    Returns the check and the head to verify from next time (None when the chain is broken)."""
    if not path.exists():
        return Check("audit", CRIT, f"{path} does not exist"), None
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return Check("audit", CRIT, f"{path} is not writable"), None
    started = time.perf_counter()
    result = verify_audit(path, from_checkpoint=since)
    figures = {"records": result.records, "verify_ms": round((time.perf_counter() - started) * 1000, 1)}
    where = f"from record {since.seq}" if since else "from the start"
    if not result.ok:
        detail = f"chain broken at line {result.first_bad_line}: {result.reason}"
        if since is not None:
            detail += f" (verified {where}; run `replicator audit verify` for the whole file)"
        return Check("audit", CRIT, detail, figures), None
    return Check("audit", OK, f"chain verifies {where} ({result.records} records)", figures), result.head or since


async def check_journal(journal, limits: Thresholds) -> Check:
    try:
        backlog = await asyncio.wait_for(journal.backlog(), limits.probe_timeout)
    except Exception as e:  # unreachable, locked, timed out: all CRIT
        return Check("journal", CRIT, _why(e) if str(e) else f"no answer within {limits.probe_timeout:g}s")
    figures = {"pending": backlog.pending, "oldest_s": round(backlog.oldest_age, 1)}
    if backlog.pending > limits.backlog_warn or backlog.oldest_age > limits.oldest_warn_s:
        return Check("journal", WARN, f"backlog {backlog.pending} rows, oldest {backlog.oldest_age:.0f}s", figures)
    return Check("journal", OK, f"backlog {backlog.pending} rows", figures)


def _encode_checkpoint(cp: Checkpoint) -> str:
    return f"{cp.seq}:{cp.offset}:{cp.hash}"


def _decode_checkpoint(text: str | None) -> Checkpoint | None:
    try:
        seq, offset, digest = (text or "").split(":")
        return Checkpoint(int(seq), int(offset), digest)
    except ValueError:
        return None  # none saved yet (or unreadable): verify the whole file


async def _audit_with_checkpoint(path: Path, journal, key: str | None, limits: Thresholds) -> Check:
    """The audit check from the checkpoint saved in the journal under ``key``; saves the new head."""
    since, reachable = None, False
    if key is not None:
        with contextlib.suppress(Exception):  # journal down: its own check says so; verify everything
            since = _decode_checkpoint(await asyncio.wait_for(journal.load_checkpoint(key), limits.probe_timeout))
            reachable = True
    check, head = await asyncio.to_thread(check_audit, path, since)
    if reachable and head is not None and head != since:  # not a second timeout on a journal that hangs
        with contextlib.suppress(Exception):
            await asyncio.wait_for(journal.save_checkpoint(key, _encode_checkpoint(head)), limits.probe_timeout)
    return check


def audit_checkpoint_key(node_id: str, path: Path) -> str:
    """Where the journal keeps this node's audit checkpoint (several nodes may share a journal)."""
    return f"health:audit:{node_id}:{Path(path).resolve()}"


async def reset_audit_checkpoint(config: Config, head: Checkpoint | None) -> None:
    """Make ``head`` (from a full verification) the checkpoint this check verifies from; None clears it."""
    async with Runtime(config) as runtime:
        key = audit_checkpoint_key(config.node_id, config.audit_log)
        if head is None:
            await runtime.journal.clear_checkpoint(key)
        else:
            await runtime.journal.save_checkpoint(key, _encode_checkpoint(head))


async def run_checks(
    regions: Mapping[str, Region],
    keyring,
    audit_path: Path,
    journal,
    limits: Thresholds,
    *,
    audit_key: str | None = None,
    node: str = "health",
) -> list[Check]:
    """Every check at once (a hanging region does not delay the others), in a fixed order.
    ``node`` goes into the probe names, so a leftover probe says which host wrote it."""
    return list(
        await asyncio.gather(
            *(check_region(n, r, limits, node) for n, r in regions.items()),
            asyncio.to_thread(check_keyring, keyring),
            _audit_with_checkpoint(audit_path, journal, audit_key, limits),
            check_journal(journal, limits),
        )
    )


async def check_ledger(regions: Mapping[str, Region], keys: KeyProvider, timeout: float | None = None) -> Check:
    """The key records agree with the erasure ledger in both regions: any key a restored backup
    brought back is destroyed again now. The running node holds its audit log, so this command
    says so in its log lines and in the check; the node's next start has nothing left to audit."""
    try:
        done = await ErasureLedger(regions, keys).reapply(timeout)
    except LedgerUnavailable as e:
        return Check("erasure-ledger", CRIT, str(e))
    except Exception as e:  # the key records could not be changed: the restored keys are still there
        return Check("erasure-ledger", CRIT, f"re-applying failed: {type(e).__name__}: {e}")
    figures: dict[str, float | int] = {
        "entries": done.entries,
        "customers": done.customers,
        "redestroyed": len(done.redestroyed),
    }
    if done.redestroyed:
        detail = (
            f"destroyed again {len(done.redestroyed)} customers' keys that a restored backup had brought back "
            f"(tags {', '.join(done.redestroyed[:5])}{'…' if len(done.redestroyed) > 5 else ''})"
        )
        return Check("erasure-ledger", WARN, detail, figures)
    if done.unread:
        return Check("erasure-ledger", WARN, f"ledger unreadable in {', '.join(done.unread)}", figures)
    return Check("erasure-ledger", OK, f"{done.customers} erased customers; the key records agree", figures)


# -- the command -------------------------------------------------------------------------------


class _Locked:
    """Stands in for a keyring that would not open, so its check reports why."""

    def __init__(self, error: Exception):
        self.error = error

    def check(self) -> None:
        raise self.error


class _Unreachable:
    """Stands in for a journal that would not open, so its check reports why."""

    def __init__(self, error: Exception):
        self.error = error

    async def backlog(self):
        raise self.error

    async def load_checkpoint(self, key: str):
        raise self.error

    async def save_checkpoint(self, key: str, name: str):
        raise self.error

    async def close(self) -> None:
        pass


async def probe(config: Config, limits: Thresholds, only: tuple[str, ...] = ()) -> list[Check]:
    """Open what ``config`` names, run every check, close everything (each close bounded too).

    Whatever fails to open is that component's check (CRIT), never the
    end of the run: the other components are still probed."""
    # One attempt per step: health reports what a region does now, it does not retry past the timeout.
    retry = RetryPolicy(attempts=1, timeout=limits.probe_timeout)
    async with Runtime(config, retry=retry, close_timeout=limits.probe_timeout) as runtime:
        regions: dict[str, Region] = {}
        failed: list[Check] = []
        for name in config.regions:
            if only and name not in only:
                continue
            try:
                regions[name] = runtime.region(name)
            except Exception as e:  # a credential the driver refuses: that region is CRIT, the rest still run
                failed.append(Check(f"region:{name}", CRIT, f"open: {_why(e)}"))
        journal: Any
        try:
            journal = runtime.journal
        except Exception as e:  # reported as the journal check; the audit log is then verified in full
            journal = _Unreachable(e)
        keyring: Any
        try:
            ring = config.keys.keyring
            if ring is not None and not await asyncio.to_thread(Path(ring).exists):  # health must not create one
                raise KeyringError(f"keyring {ring} does not exist")
            keyring = await asyncio.wait_for(runtime.keys(create=False), limits.probe_timeout)
        except Exception as e:  # reported as the keyring check
            keyring = _Locked(e if str(e) else TimeoutError(f"did not open within {limits.probe_timeout:g}s"))
        ledger = None  # alongside the other checks: a hanging region costs one timeout, not two
        if not isinstance(keyring, _Locked) and regions and not only:
            ledger = asyncio.ensure_future(check_ledger(regions, keyring, limits.probe_timeout))
        checks = await run_checks(
            regions,
            keyring,
            config.audit_log,
            journal,
            limits,
            audit_key=audit_checkpoint_key(config.node_id, config.audit_log),
            node=config.node_id,
        )
        if ledger is not None:
            checks.append(await ledger)
        if runtime.kek_service is not None:
            checks.append(await check_kek_service(runtime.kek_service, limits))
    order = [f"region:{n}" for n in config.regions]
    by_region = sorted(
        [c for c in checks + failed if c.component.startswith("region:")], key=lambda c: order.index(c.component)
    )
    return by_region + [c for c in checks if not c.component.startswith("region:")]


_THREADS = "replicator-health"  # names this command's worker threads, so exit_now looks at them only


def run(config, limits: Thresholds, only: tuple[str, ...] = ()) -> list[Check]:
    """:func:`probe` on a loop of its own that, unlike ``asyncio.run``, does not wait at the end for
    worker threads: a thread stuck in a hung SDK call must not hold the command past its timeout."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix=_THREADS))
    try:
        return loop.run_until_complete(probe(config, limits, only))
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # shuts the executor down without waiting for its threads


def exit_now(code: int, grace: float = 0.5) -> None:
    """Exit with ``code``. If one of :func:`run`'s worker threads is still stuck in a hung call after
    ``grace`` seconds, the interpreter would join it before exiting: leave at once instead."""
    deadline = time.monotonic() + grace
    for thread in [t for t in threading.enumerate() if t.name.startswith(_THREADS)]:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    sys.exit(code)


def to_json(checks: list[Check], elapsed: float | None = None) -> str:
    """``{"status", "elapsed_s" (probing and closing, without the interpreter's start), "checks"}``."""
    report: dict = {"status": worst(checks)}
    if elapsed is not None:
        report["elapsed_s"] = round(elapsed, 3)
    return json.dumps({**report, "checks": [vars(c) for c in checks]}, indent=1)


def print_table(checks: list[Check], file=None) -> None:
    """A table with the status in colour on a terminal (plain text otherwise)."""
    from rich.console import Console
    from rich.table import Table

    colours = {OK: "green", WARN: "yellow", CRIT: "bold red"}
    status = worst(checks)
    table = Table(title=f"replicator health: [{colours[status]}]{status}[/]", title_justify="left")
    for column in ("component", "status", "detail", "figures"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(
            c.component,
            f"[{colours[c.status]}]{c.status}[/]",
            c.detail,
            " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.figures.items()),
        )
    console = Console(file=file, highlight=False)
    if not console.is_terminal:  # a log or a pager mail: wide lines rather than wrapped cells
        console = Console(file=file, highlight=False, width=160)
    console.print(table)
