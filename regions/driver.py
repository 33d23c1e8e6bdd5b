"""The driver contract: the primitives a store provides behind the portable layer.

A driver is a subclass of :class:`~regions.portable.PortableRegion` that
implements the abstract methods of :class:`Driver` below. The portable layer
calls them only with arguments it has already checked, and adds what is the
same for every store; a driver does none of it again:

* names are valid per :mod:`regions.base` ("Names"), metadata is a plain
  ``dict`` valid per "Metadata", and a put has at most one condition, with an
  ``if_match`` that is a non-empty string;
* a ``_get`` byte range is a valid :class:`~regions.base.ByteRange`;
* the bytes a ``_get`` stream yields are hashed and compared with the
  :class:`~regions.base.ObjectInfo` it returned: a mismatch of size or digest
  is :class:`~regions.base.Corrupt` raised by the portable layer (for a
  ranged ``_get``, only the length is compared: with the clipped range);
* calls are observed (op, region, duration, outcome) when an observer is set.

One primitive is optional: ``_copy`` (:meth:`regions.base.Region.copy`). The portable
layer's own reads the object through this process and puts it; a store that can copy
inside itself overrides it.

What stays with the driver: its store's requests, computing the SHA-256 of a
body while it streams in and keeping it with the object, its one error
translation function (every store failure leaves a primitive as a
:class:`~regions.base.RegionError` raised ``from`` the original), and retries
(:mod:`regions._retry`) of the calls that can be repeated.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from .base import Body, ByteRange, ObjectInfo


class Driver(abc.ABC):
    """The primitives of one store. Each guarantee here is checked by ``tests/conformance/``."""

    #: Short label used in errors, logs and metrics.
    name: str

    @abc.abstractmethod
    async def _put(
        self, name: str, body: Body, meta: dict[str, str], *, if_none_match: bool, if_match: str | None
    ) -> ObjectInfo:
        """Store ``body`` atomically and return its info: size, SHA-256 digest and a new etag.

        A reader sees the old object or the whole new one. ``if_none_match``
        and ``if_match`` are checked when the new object would become visible;
        a false condition is :class:`~regions.base.PreconditionFailed` and
        changes nothing. A put from an iterator is not retried; a put from
        ``bytes`` may be, and a retry that finds its own earlier attempt stored
        succeeds. An exception raised by ``body`` itself propagates unchanged.
        """

    @abc.abstractmethod
    async def _get(self, name: str, byte_range: ByteRange | None = None) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The info of ``name`` and an iterator over its stored bytes, unverified.

        With ``byte_range``: the info of the whole object (``size`` the whole
        size) and an iterator over only ``byte_range.within(size)``, fetched
        alone from the store (never the whole object, then sliced);
        :class:`~regions.base.RangeNotSatisfiable` if the range starts at or
        after the end. :class:`~regions.base.NotFound` if missing. The iterator raises
        :class:`~regions.base.Unavailable` when the store fails mid-stream (or
        :class:`~regions.base.Corrupt` where the store itself shows damage),
        and releases its connection when exhausted or ``aclose()``-d.
        """

    @abc.abstractmethod
    async def _head(self, name: str) -> ObjectInfo:
        """The info of ``name``; :class:`~regions.base.NotFound` if missing."""

    @abc.abstractmethod
    async def _delete(self, name: str, *, if_match: str | None) -> None:
        """Remove ``name``; a missing object succeeds, with or without ``if_match``.

        With ``if_match``, an object that holds another write is
        :class:`~regions.base.PreconditionFailed` and stays.
        """

    @abc.abstractmethod
    def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in byte order of the UTF-8 name, paged,
        in constant memory; the same fields (etag included) as ``_head``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the region is unusable afterwards."""
