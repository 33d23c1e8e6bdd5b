"""Reaching a region: the first probe of ``replicator health``, all of ``/readyz``'s region check, and the
reconciler's start check. Light on purpose (regions only): the reconciler imports it."""

from __future__ import annotations

from regions import NotFound, Region

PROBE_PREFIX = "health/"  # a prefix the service never writes under (its names start v1/)
PROBE_NAME = f"{PROBE_PREFIX}probe"  # a name never written: its HEAD answers NotFound


async def reach(region: Region, probe: str = PROBE_NAME) -> None:
    """Authenticate and reach the container: a HEAD of a name that does not exist must answer NotFound."""
    try:
        await region.head(probe)
    except NotFound:
        pass  # the answer expected: credentials accepted, container reached
