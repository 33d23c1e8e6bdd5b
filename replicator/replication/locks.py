"""Name locks: one writer of a name at a time.

Every write and every copy of one name holds that name's lock, so a copy can
never put an older version over a newer one that a concurrent write just
stored. :class:`NameLocks` serves one process; a cluster's nodes share
:class:`~replicator.replication.cluster.ClusterSession` (PostgreSQL), which
takes the process's lock first and then the cluster's. Across processes the
conditional puts (``if_match`` / ``if_none_match``) of copies keep the same
rule: a racing write fails the copy, never the other way round.

A lock hands its holder a :class:`Hold`: the newest version any holder
wrote to the name (``floor``, cluster locks only), which the writer's clock
must exceed, so that writes serialised by the lock also carry increasing
versions (node clocks differ); and the version the holder wrote
(``wrote``), for the next holder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Hold:
    """What the holder of a name's lock knows and tells: see the module docstring."""

    __slots__ = ("floor", "written")

    def __init__(self, floor: str | None = None) -> None:
        self.floor = floor
        self.written: str | None = None

    def wrote(self, version: str) -> None:
        self.written = version


class Locks(Protocol):
    def hold(self, name: str) -> AbstractAsyncContextManager[Hold]: ...


class NameLocks:
    """One asyncio lock per object name, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[Hold]:
        lock, users = self._locks.get(name, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield Hold()
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)
