"""A Region wrapper that logs and measures every call, so the drivers do neither.

Logs carry the op, region, object name (a tag, never a customer identifier),
duration and outcome. Bodies and metadata values are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping

from regions import Body, ObjectInfo, Region, RegionError

from replicator.observe.metrics import Metrics

log = logging.getLogger("replicator.region")


class ObservedRegion:
    def __init__(self, inner: Region, metrics: Metrics):
        self.inner = inner
        self.name = inner.name
        self.features = inner.features
        self._metrics = metrics

    def _record(self, op: str, started: float, outcome: str, name: str | None) -> None:
        elapsed = time.perf_counter() - started
        self._metrics.region_ops.labels(self.name, op, outcome).observe(elapsed)
        level = logging.DEBUG if outcome in ("ok", "NotFound") else logging.WARNING
        log.log(level, "region op", extra={"region": self.name, "op": op, "object": name,
                                           "outcome": outcome, "seconds": round(elapsed, 4)})

    async def _call(self, op: str, name: str | None, coro):
        started = time.perf_counter()
        try:
            result = await coro
        except RegionError as e:
            self._record(op, started, type(e).__name__, name)
            raise
        except BaseException:
            self._record(op, started, "error", name)
            raise
        self._record(op, started, "ok", name)
        return result

    async def put(self, name: str, body: Body, meta: Mapping[str, str], *,
                  if_none_match: bool = False, if_match: str | None = None) -> ObjectInfo:
        return await self._call("put", name, self.inner.put(name, body, meta, if_none_match=if_none_match,
                                                            if_match=if_match))

    async def get(self, name: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        return await self._call("get", name, self.inner.get(name))

    async def head(self, name: str) -> ObjectInfo:
        return await self._call("head", name, self.inner.head(name))

    async def delete(self, name: str, *, if_match: str | None = None) -> None:
        await self._call("delete", name, self.inner.delete(name, if_match=if_match))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        started, outcome = time.perf_counter(), "ok"
        try:
            async for info in self.inner.list(prefix):
                yield info
        except RegionError as e:
            outcome = type(e).__name__
            raise
        finally:
            self._record("list", started, outcome, prefix or None)

    async def close(self) -> None:
        await self.inner.close()
