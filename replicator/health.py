"""`replicator health`: probe everything the service depends on and grade it OK / WARN / CRIT.

Each region: write, read back, verify and delete a probe object under the
reserved prefix ``health/`` (a name the service never uses: its names start
``v1/``), then list that prefix; every step is timed. The key provider: the
keyring unlocks and wraps/unwraps. The audit log: present, writable, and its
hash chain verifies. The journal: reachable, backlog size, age of the oldest
row. A step that does not answer within the probe timeout is CRIT, never a
hung command.

Grades: CRIT when something is down (a region, the keyring, the audit chain);
WARN when it works but is slow or behind (latency, backlog, oldest row over
the thresholds). Exit codes follow Nagios: 0 OK, 1 WARN, 2 CRIT.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keys.audit import verify as verify_audit
from regions import Region, RegionError

OK, WARN, CRIT = "OK", "WARN", "CRIT"
EXIT = {OK: 0, WARN: 1, CRIT: 2}
_RANK = {OK: 0, WARN: 1, CRIT: 2}
PROBE_PREFIX = "health/"


@dataclass(frozen=True)
class Thresholds:
    probe_timeout: float = 10.0         # seconds for one probe step
    latency_warn_ms: float = 2000.0     # a region step slower than this is WARN
    backlog_warn: int = 1000            # pending journal rows
    oldest_warn_s: float = 3600.0       # age of the oldest pending row


@dataclass
class Check:
    component: str                      # "region:ca", "keyring", "audit", "journal"
    status: str
    detail: str
    figures: dict[str, float | int] = field(default_factory=dict)


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=_RANK.__getitem__, default=OK)


async def _timed(step: str, coro, timeout: float, figures: dict) -> object:
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(coro, timeout)
    finally:
        figures[f"{step}_ms"] = round((time.perf_counter() - started) * 1000, 1)


async def check_region(name: str, region: Region, limits: Thresholds, node: str = "health") -> Check:
    figures: dict[str, float | int] = {}
    probe = f"{PROBE_PREFIX}{node}-{secrets.token_hex(6)}"
    body = secrets.token_bytes(1024)
    step = "put"
    try:
        await _timed("put", region.put(probe, body, {"probe": "1"}), limits.probe_timeout, figures)
        step = "get"

        async def read_back() -> bytes:
            _, stream = await region.get(probe)
            return b"".join([c async for c in stream])

        got = await _timed("get", read_back(), limits.probe_timeout, figures)
        if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
            return Check(f"region:{name}", CRIT, "probe object came back different", figures)
        step = "delete"
        await _timed("delete", region.delete(probe), limits.probe_timeout, figures)
        step = "list"

        async def list_one() -> None:
            async for _ in region.list(PROBE_PREFIX):
                break

        await _timed("list", list_one(), limits.probe_timeout, figures)
    except asyncio.TimeoutError:
        return Check(f"region:{name}", CRIT, f"{step}: no answer within {limits.probe_timeout:g}s", figures)
    except RegionError as e:
        return Check(f"region:{name}", CRIT, f"{step}: {type(e).__name__}: {e}", figures)
    slow = [k for k, v in figures.items() if v > limits.latency_warn_ms]
    if slow:
        return Check(f"region:{name}", WARN, "slow: " + ", ".join(f"{k}={figures[k]:g}" for k in slow), figures)
    return Check(f"region:{name}", OK, "put/get/verify/delete/list", figures)


def check_keyring(keyring) -> Check:
    try:
        keyring.check()
    except Exception as e:  # any failure to unlock is what this check reports
        return Check("keyring", CRIT, f"{type(e).__name__}: {e}")
    return Check("keyring", OK, "unlocks; wrap/unwrap works")


def check_audit(path: Path) -> Check:
    if not path.exists():
        return Check("audit", CRIT, f"{path} does not exist")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return Check("audit", CRIT, f"{path} is not writable")
    started = time.perf_counter()
    result = verify_audit(path)
    figures = {"records": result.records, "verify_ms": round((time.perf_counter() - started) * 1000, 1)}
    if not result.ok:
        return Check("audit", CRIT, f"chain broken at line {result.first_bad_line}: {result.reason}", figures)
    return Check("audit", OK, f"chain verifies ({result.records} records)", figures)


async def check_journal(journal, limits: Thresholds) -> Check:
    try:
        backlog = await asyncio.wait_for(journal.backlog(), limits.probe_timeout)
    except Exception as e:  # unreachable, locked, timed out: all CRIT
        return Check("journal", CRIT, f"{type(e).__name__}: {e}")
    figures = {"pending": backlog.pending, "oldest_s": round(backlog.oldest_age, 1)}
    if backlog.pending > limits.backlog_warn or backlog.oldest_age > limits.oldest_warn_s:
        return Check("journal", WARN, f"backlog {backlog.pending} rows, oldest {backlog.oldest_age:.0f}s", figures)
    return Check("journal", OK, f"backlog {backlog.pending} rows", figures)


async def run_checks(regions: Mapping[str, Region], keyring, audit_path: Path, journal,
                     limits: Thresholds) -> list[Check]:
    region_checks = await asyncio.gather(*(check_region(n, r, limits) for n, r in regions.items()))
    checks = list(region_checks)
    checks.append(await asyncio.to_thread(check_keyring, keyring))
    checks.append(await asyncio.to_thread(check_audit, audit_path))
    checks.append(await check_journal(journal, limits))
    return checks
