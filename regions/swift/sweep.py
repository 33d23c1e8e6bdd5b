"""The Swift driver's segment sweep: deleting the segments of uploads no object refers to."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..base import RegionError, SegmentSweep
from .large import CLEANUP_CONCURRENCY, forget_segments, segments_of
from .wire import key_of_segment

if TYPE_CHECKING:
    from .driver import SwiftRegion

log = logging.getLogger("regions.swift")

SWEEP_AFTER = timedelta(days=1)  # far longer than any upload at the driver's minimum upload rate


@dataclasses.dataclass
class _Upload:
    key: str
    newest: datetime
    paths: list[str] = dataclasses.field(default_factory=list)
    size: int = 0


async def sweep_segments(
    region: SwiftRegion,
    *,
    older_than: timedelta | None = None,
    key_prefix: str = "",
) -> SegmentSweep:
    """Delete the segments of uploads no object refers to (see "Large objects").

    An upload is looked at once it is ``older_than`` (by the Unix time in its name and its
    segments' dates), so a put still uploading is never touched; ``key_prefix`` limits the
    sweep to uploads made for keys under it (the erasure of one customer passes
    ``older_than=0``: nothing may be written there any more). An upload is deleted only if the
    object it was made for is not a large object listing it: the object itself (HEAD, then its
    manifest) decides, not the container listing, which can lag behind writes. Segments that
    do not name their object (an older driver, another tool) are counted and left alone.
    """
    cutoff = datetime.now(UTC) - (SWEEP_AFTER if older_than is None else older_than)
    wanted = region.prefix + key_prefix
    uploads: dict[str, _Upload] = {}
    found = SegmentSweep()
    marker = ""
    while True:
        page = await region._call(
            functools.partial(region._page, region.prefix, marker, region.segment_container), None
        )
        for item in page:
            upload, _, index = item["name"].rpartition("/")
            stamp = upload[len(region.prefix) :].partition("-")[0]
            if not (index.isdigit() and stamp.isdigit()):
                continue  # not an upload of ours
            key = key_of_segment(item.get("content_type"))
            if key is None:
                found.unattributed += 1
                continue
            if not key.startswith(wanted):
                continue
            entry = uploads.setdefault(upload, _Upload(key, datetime.fromtimestamp(int(stamp), UTC)))
            entry.paths.append(f"/{region.segment_container}/{item['name']}")
            entry.size += item["bytes"]
            entry.newest = max(entry.newest, datetime.fromisoformat(item["last_modified"]).replace(tzinfo=UTC))
        if len(page) < region.page_size:
            break
        marker = page[-1]["name"]
    live: dict[str, asyncio.Future[list[str]]] = {}  # key -> the segment paths its current object uses
    sem = asyncio.Semaphore(CLEANUP_CONCURRENCY)

    async def sweep(upload: str, entry: _Upload) -> None:
        if entry.newest > cutoff:
            found.young += 1
            return
        async with sem:
            if entry.key not in live:
                live[entry.key] = asyncio.ensure_future(
                    region._call(lambda: segments_of(region, entry.key, entry.key), entry.key)
                )
            try:
                in_use = await live[entry.key]
            except RegionError as e:
                log.warning("region %s: segment sweep could not look at %r: %s", region.name, entry.key, e)
                found.failed += 1
                return
        if any(p.startswith(f"/{region.segment_container}/{upload}/") for p in in_use):
            found.kept += 1
            return
        deleted = await forget_segments(region, entry.paths, entry.key)
        found.uploads += 1
        found.segments += deleted
        found.bytes += entry.size if deleted == len(entry.paths) else 0
        log.info("region %s: swept %d orphan segments of an upload for %r", region.name, deleted, entry.key)

    try:
        async with asyncio.TaskGroup() as group:
            for upload, entry in uploads.items():
                group.create_task(sweep(upload, entry))
    finally:
        for f in live.values():
            f.cancel()
    return found
