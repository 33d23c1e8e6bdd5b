"""Copying one name between regions: the one function that moves a replica.

Ciphertext only: a copy never decrypts. The put is conditional on what the
destination held when the copy was decided (``if_match`` its etag, or
``if_none_match`` where it held nothing), so a write that races the copy
always wins: the copy fails with ``PreconditionFailed`` and the caller
decides again. What arrived is checked against the source's digest and size.

Both the replication workers (:func:`copy_newest`) and the reconciler's
executor use :func:`copy_over`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from regions import Corrupt, NotFound, ObjectInfo, PreconditionFailed, Region
from replicator.layout import ObjectMeta, version_of


async def copy_over(
    src: Region,
    dst: Region,
    name: str,
    *,
    over: ObjectInfo | None,
    expect: Callable[[ObjectInfo], bool] = lambda _: True,
) -> ObjectInfo | None:
    """Stream ``src``'s replica of ``name`` onto ``dst``, only over the write ``over`` (None: only
    where ``dst`` holds nothing).

    Returns the source's info once copied; None, putting nothing, when the
    source no longer holds the name or holds one that ``expect`` refuses.
    Raises ``PreconditionFailed`` when ``dst`` changed since ``over``,
    ``Corrupt`` when the stored bytes differ from the source's digest or
    size, and any other ``RegionError`` of either region.
    """
    try:
        info, stream = await src.get(name)
    except NotFound:
        return None
    try:
        if not expect(info):
            return None
        if over is None:
            stored = await dst.put(name, stream, info.meta, if_none_match=True)
        else:
            stored = await dst.put(name, stream, info.meta, if_match=over.etag)
    finally:
        await stream.aclose()
    if stored.digest != info.digest or stored.size != info.size:
        raise Corrupt(
            f"copy from {src.name!r} stored digest {stored.digest[:12]}… ({stored.size} bytes), "
            f"expected {info.digest[:12]}… ({info.size} bytes)",
            region=dst.name,
            name=name,
        )
    return info


async def keep_replica(
    region: Region, name: str, info: ObjectInfo, superseded_ms: int, *, body: bytes | None = None
) -> ObjectInfo:
    """Keep ``region``'s replica ``info`` of ``name`` at ``<name>/<version>`` in that region, as a
    kept version superseded at ``superseded_ms`` (``replicator.paths.versions``): copied inside
    the region (``Region.copy``), so a far region's bytes do not cross the WAN twice. ``body``:
    the replica's bytes, already read (and verified) with ``info``: put as they are. Ciphertext only."""
    meta = replace(ObjectMeta.of(info), superseded_ms=superseded_ms)
    target = f"{name}/{meta.version}"
    if meta.tombstone:
        return await region.put(target, b"", meta.to_meta())
    if body is not None:
        return await region.put(target, body, meta.to_meta())
    return await region.copy(name, target, info, meta.to_meta())  # inside the store where it can


async def copy_newest(
    src: Region,
    dst: Region,
    name: str,
    *,
    repair: bool = False,
    keep_days: Mapping[str, int] | None = None,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> str:
    """Make ``dst`` hold ``src``'s version of ``name`` unless it has the same or newer.

    An older replica that ``dst`` holds is kept first (:func:`keep_replica`) when its class
    keeps versions (``keep_days``), as the write path keeps what it replaces.

    With ``repair`` the same version is copied too: ``dst``'s bytes failed
    their digest, and ``src``'s copy is checked on the way (the get raises
    ``Corrupt`` before the put can complete if ``src`` is bad as well).

    Returns ``"copied"``, ``"current"`` (nothing to do) or ``"gone"`` (the
    source no longer has it). Raises RegionError on failure; ``Corrupt`` when
    the bytes that arrived do not match the source's digest.
    """
    for attempt in range(3):
        try:
            src_info = await src.head(name)
        except NotFound:
            return "gone"
        try:
            dst_info: ObjectInfo | None = await dst.head(name)
        except NotFound:
            dst_info = None
        src_version = version_of(src_info)
        if dst_info is not None and src_version is not None:
            dst_version = version_of(dst_info)
            if dst_version is not None and (dst_version > src_version or (dst_version == src_version and not repair)):
                return "current"
        if dst_info is not None and keep_days and not repair:
            try:
                meta = ObjectMeta.of(dst_info)
            except ValueError:
                meta = None
            if meta is not None and not meta.kept and keep_days.get(meta.data_class, 0) > 0:
                await keep_replica(dst, name, dst_info, now_ms())
        try:
            copied = await copy_over(src, dst, name, over=dst_info)
        except PreconditionFailed:
            if attempt == 2:
                raise  # the journal retries later
            continue  # a write raced the copy: decide again
        return "copied" if copied is not None else "gone"
    raise AssertionError("unreachable")
