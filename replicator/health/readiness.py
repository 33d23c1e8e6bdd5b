"""``/readyz``: whether this process can take traffic now.

The same probes as ``replicator health`` (:mod:`.probes`), only the cheap
ones: each region is reached (a HEAD whose NotFound proves credentials and
container), the journal answers, the keyring unlocks, the audit log can be
appended to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from keys import AuditLog
from keys.provider import KeyProvider, KeyStoreUnavailable
from regions import Region, RegionError
from replicator.health.reach import PROBE_NAME, reach
from replicator.journal import Journal

REGION_TIMEOUT = 5.0


async def readiness(
    regions: Mapping[str, Region], keyring: KeyProvider, journal: Journal, audit: AuditLog
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
    return checks
