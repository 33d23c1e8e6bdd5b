"""``/readyz``: whether this process can take traffic now.

The same probes as ``replicator health`` (:mod:`.probes`), only the cheap
ones: each region is reached (a HEAD whose NotFound proves credentials and
container), the journal answers, the keyring unlocks, the audit log can be
appended to, and, when the KEK came from a key service (Barbican), that
service still answers for the secret (its metadata, never the key).

The key service is a soft dependency of a running process: the KEK is in
memory, so keys are served while it is down; only a restart, or a rotation,
needs it. ``kek_service`` says so, and ``/readyz`` answers "degraded", not
"unavailable" (``replicator.http.handlers.readyz``). So does ``audit_shipping``: the
audit records not yet in both regions (``replicator.replication.audit_ship``);
the local append is what refuses a read, never the shipping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from keys import AuditLog
from keys.provider import KeyProvider, KeyServiceError, KeyStoreUnavailable, ServiceKek
from regions import Region, RegionError
from replicator.health.reach import PROBE_NAME, reach
from replicator.journal import Journal

REGION_TIMEOUT = 5.0
KEK_SERVICE_TIMEOUT = 5.0
SOFT_CHECKS = frozenset({"kek_service", "audit_shipping"})  # checks whose failure leaves the service ready (degraded)


async def kek_service_state(service: ServiceKek, timeout: float = KEK_SERVICE_TIMEOUT) -> str:
    """The key service's state: "ok", "unreachable: …" (no answer), "failing: … (HTTP n)" (not the secret)."""
    try:
        # The thread ends by the request's own timeout; wait_for only stops waiting for it.
        await asyncio.wait_for(asyncio.to_thread(service.probe, timeout), timeout + 1)
    except TimeoutError:
        return f"unreachable: no answer within {timeout:g}s"
    except KeyServiceError as e:
        return f"{'unreachable' if e.status is None else 'failing'}: {e.reason}"
    except Exception as e:  # anything else is no answer either; say which kind
        return f"unreachable: {type(e).__name__}"
    return "ok"


async def readiness(
    regions: Mapping[str, Region],
    keyring: KeyProvider,
    journal: Journal,
    audit: AuditLog,
    kek_service: ServiceKek | None = None,
    audit_shipping: Callable[[], str] | None = None,
) -> dict[str, str]:
    """Each dependency the service needs to take traffic: "ok" or what is wrong."""

    async def region_ok(region: Region) -> str:
        try:
            await asyncio.wait_for(reach(region, PROBE_NAME), REGION_TIMEOUT)
        except (TimeoutError, RegionError) as e:
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
        except KeyStoreUnavailable as e:  # reads refuse to decrypt until it answers (fail closed)
            return f"unavailable: {type(e).__name__}"
        except Exception as e:
            return f"locked: {type(e).__name__}"

    states = await asyncio.gather(*(region_ok(r) for r in regions.values()), journal_ok())
    checks = {f"region:{name}": s for name, s in zip(regions, states[:-1], strict=True)}
    checks["journal"] = states[-1]
    checks["keyring"] = await asyncio.to_thread(keyring_ok)
    checks["audit"] = audit.problem() or "ok"
    if kek_service is not None:
        checks["kek_service"] = await kek_service_state(kek_service)
    if audit_shipping is not None:  # soft: reads go on while the regions miss the newest records
        checks["audit_shipping"] = audit_shipping()
    return checks
