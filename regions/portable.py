"""The portable layer: what every region does the same way, in front of its driver's primitives.

A :class:`PortableRegion` is a :class:`~regions.base.Region`. Its public
methods check their arguments per the contract (:mod:`regions.base`) before
any I/O, call the driver's primitive (:mod:`regions.driver`), verify the
digest of every body read, and report each call to an optional
:class:`Observer`. Drivers subclass it and implement only the primitives.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Protocol, TypeVar

from .base import (
    NO_FEATURES,
    Body,
    ByteRange,
    Corrupt,
    Features,
    ObjectInfo,
    PreconditionFailed,
    RangeNotSatisfiable,
    Reader,
    RegionError,
    check_conditions,
    check_meta,
    check_name,
    check_range,
)
from .driver import Driver

T = TypeVar("T")
# A copy through this process buffers a body up to this size: a put from bytes may be retried.
COPY_IN_MEMORY = 4 << 20


class Observer(Protocol):
    """Told of every call a region makes: for logs and metrics outside the drivers."""

    def observe(self, region: str, op: str, name: str | None, outcome: str, seconds: float) -> None:
        """``outcome`` is ``"ok"``, the :class:`~regions.base.RegionError` subclass name, or ``"error"``."""


class PortableRegion(Driver):
    """A region: the contract's checks and digest verification around a driver's primitives."""

    #: The optional abilities; a driver that has one sets its own.
    features: Features = NO_FEATURES
    #: Told of every call when set (see :class:`Observer`).
    observer: Observer | None = None

    async def put(
        self,
        name: str,
        body: Body,
        meta: Mapping[str, str],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        check_name(name)
        plain = check_meta(meta)
        check_conditions(if_none_match, if_match)
        return await self._observed(
            "put", name, self._put(name, body, plain, if_none_match=if_none_match, if_match=if_match)
        )

    async def get(self, name: str, *, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, Reader]:
        check_name(name)
        check_range(byte_range)
        if byte_range is None:
            info, stream = await self._observed("get", name, self._get(name))
            return info, self._verified(info, stream)
        info, stream = await self._observed("get", name, self._get(name, byte_range))
        want = byte_range.within(info.size)
        if want is None:  # the driver should have said so; never hand out bytes that are not there
            await _close(stream)
            raise RangeNotSatisfiable(
                f"range {byte_range.start}-{byte_range.end} starts past the end ({info.size} bytes)",
                region=self.name,
                name=name,
            )
        return info, self._counted(info, want, stream)

    async def head(self, name: str) -> ObjectInfo:
        check_name(name)
        return await self._observed("head", name, self._head(name))

    async def copy(self, source: str, target: str, info: ObjectInfo, meta: Mapping[str, str]) -> ObjectInfo:
        check_name(source)
        check_name(target)
        plain = check_meta(meta)
        return await self._observed("copy", target, self._copy(source, target, info, plain))

    async def _copy(self, source: str, target: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        """The copy of a store that cannot copy inside itself: read here, verified, and put (a
        driver that can overrides this; see :meth:`regions.base.Region.copy`)."""
        got, stream = await self.get(source)
        try:
            if got.etag != info.etag:
                raise PreconditionFailed("the source holds another write", region=self.name, name=source)
            if got.size <= COPY_IN_MEMORY:  # from bytes: the driver may retry the put
                return await self._put(
                    target, b"".join([c async for c in stream]), meta, if_none_match=False, if_match=None
                )
            return await self._put(target, stream, meta, if_none_match=False, if_match=None)
        finally:
            await _close(stream)

    async def delete(self, name: str, *, if_match: str | None = None) -> None:
        check_name(name)
        check_conditions(False, if_match)
        await self._observed("delete", name, self._delete(name, if_match=if_match))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        started, outcome = time.perf_counter(), "ok"
        try:
            async for info in self._list(prefix):
                yield info
        except RegionError as e:
            outcome = type(e).__name__
            raise
        except GeneratorExit:  # the consumer stopped early: not a failure
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            self._report("list", prefix or None, outcome, started)

    async def _verified(self, info: ObjectInfo, stream: AsyncIterator[bytes]) -> Reader:
        """``stream``, then :class:`Corrupt` if what it yielded is not what ``info`` describes."""
        sha, size = hashlib.sha256(), 0
        try:
            async for chunk in stream:
                sha.update(chunk)
                size += len(chunk)
                yield chunk
        finally:
            # Closed early by the consumer: release the driver's connection now, not at GC.
            await _close(stream)
        if size != info.size or sha.hexdigest() != info.digest:
            raise Corrupt(
                f"stored bytes do not match their digest ({size} of {info.size} bytes)",
                region=self.name,
                name=info.name,
            )

    async def _counted(self, info: ObjectInfo, want: ByteRange, stream: AsyncIterator[bytes]) -> Reader:
        """``stream``, then :class:`Corrupt` if it did not yield exactly ``want``'s length.

        No digest: the whole object's cannot be checked from a part of it (the
        caller authenticates what it reads; see "Byte ranges" in :mod:`regions.base`).
        """
        size = 0
        try:
            async for chunk in stream:
                size += len(chunk)
                if size > want.length:
                    break
                yield chunk
        finally:
            await _close(stream)
        if size != want.length:
            raise Corrupt(
                f"range {want.start}-{want.end} read {size} bytes, not {want.length}",
                region=self.name,
                name=info.name,
            )

    async def _observed(self, op: str, name: str, call: Awaitable[T]) -> T:
        if self.observer is None:
            return await call
        started, outcome = time.perf_counter(), "ok"
        try:
            return await call
        except RegionError as e:
            outcome = type(e).__name__
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            self._report(op, name, outcome, started)

    def _report(self, op: str, name: str | None, outcome: str, started: float) -> None:
        if self.observer is not None:
            self.observer.observe(self.name, op, name, outcome, time.perf_counter() - started)


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
