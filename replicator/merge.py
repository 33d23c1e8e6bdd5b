"""Merge-join two regions' listings, both in byte order of the name, in constant memory.

``merged(a, b)`` yields ``(name, info_in_a, info_in_b)`` once per name, with
``None`` on the side that lacks it. The list API and the reconciler both walk
the two regions this way; neither ever builds a set of names.

Names are compared as ``str``: UTF-8 was designed so that its byte order is
the order of the code points, which is how Python compares strings (a name
never holds a lone surrogate: it could not be encoded). So no name is encoded
per step, which counts at a million names a night.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from regions import ObjectInfo

_DONE = None  # a listing never yields None


async def merged(
    a: AsyncIterator[ObjectInfo], b: AsyncIterator[ObjectInfo]
) -> AsyncGenerator[tuple[str, ObjectInfo | None, ObjectInfo | None], None]:
    x, y = await anext(a, _DONE), await anext(b, _DONE)
    while x is not _DONE and y is not _DONE:
        kx, ky = x.name, y.name
        if kx < ky:
            yield kx, x, None
            x = await anext(a, _DONE)
        elif ky < kx:
            yield ky, None, y
            y = await anext(b, _DONE)
        else:
            yield kx, x, y
            x, y = await anext(a, _DONE), await anext(b, _DONE)
    while x is not _DONE:
        yield x.name, x, None
        x = await anext(a, _DONE)
    while y is not _DONE:
        yield y.name, None, y
        y = await anext(b, _DONE)
