"""Merge-join two regions' listings, both in byte order of the name, in constant memory.

``merged(a, b)`` yields ``(name, info_in_a, info_in_b)`` once per name, with
``None`` on the side that lacks it. The list API and the reconciler both walk
the two regions this way; neither ever builds a set of names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from regions import ObjectInfo

_DONE = object()


async def _next(it: AsyncIterator[ObjectInfo]):
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return _DONE


async def merged(a: AsyncIterator[ObjectInfo], b: AsyncIterator[ObjectInfo]
                 ) -> AsyncIterator[tuple[str, ObjectInfo | None, ObjectInfo | None]]:
    x, y = await _next(a), await _next(b)
    while x is not _DONE or y is not _DONE:
        kx = x.name.encode() if x is not _DONE else None
        ky = y.name.encode() if y is not _DONE else None
        if ky is None or (kx is not None and kx < ky):
            yield x.name, x, None
            x = await _next(a)
        elif kx is None or ky < kx:
            yield y.name, None, y
            y = await _next(b)
        else:
            yield x.name, x, y
            x, y = await _next(a), await _next(b)
