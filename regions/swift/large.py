"""Large bodies for the Swift driver: cutting a body into segments, sending them, and the manifest.

Large objects
    A body up to ``segment_size`` bytes is one PUT. A larger one becomes a
    static large object: its segments go to ``<container>_segments`` under a
    prefix unique to this upload, and the manifest PUT comes last, so no
    reader sees a part. A segment uploads while the next one is read, starts
    without waiting for the answer to the one before (``upload_ahead``), and
    goes out as the pieces it arrived in (never joined into one buffer).
    Every HTTP request carries bytes held in memory (at most about two
    segments per put), so each one is retried on its own even when the body
    was a one-shot iterator.

    A delete, and a put with ``if_match``, find the segments of the object
    they replace beforehand (the HEAD they make anyway; the old manifest too
    if it is one) and delete them once the DELETE or new object succeeded;
    Swift only accepts a write newer than what it holds, so those segments can
    no longer be referenced. A reader still streaming the replaced object can
    lose its segments mid-stream and gets ``Unavailable``; reading again gives
    the new object.

    A plain put does not look: a HEAD before every PUT doubled the proxy's
    work on small objects, to find segments that almost never exist. The
    segments of a large object it replaces, and those of an upload cut off by
    a crash, stay behind as orphans (space only, never a broken object) until
    :func:`regions.swift.sweep.sweep_segments` deletes them; the reconciler runs it.
    Each segment names the object it was made for (``k=`` in its
    Content-Type) and its upload prefix starts with a Unix time, so the sweep
    can tell an old orphan from a live segment or an upload still under way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from .._body import READ_AHEAD, SEND_SLICE, Piece, send_slices, split, upload_ahead
from ..base import Body, PreconditionFailed, RegionError, Unavailable
from .wire import _etag, decode_content_type, encode_content_type, segment_content_type

if TYPE_CHECKING:
    from .driver import SwiftRegion

log = logging.getLogger("regions.swift")

CLEANUP_CONCURRENCY = 8  # segment deletes at once
MiB = 1 << 20
SWIFT_MAX_SEGMENTS = 1000  # SLO's default max_manifest_segments

#: One segment: the pieces of a body it is made of, never joined.
Segment = list[Piece]


async def _segments(body: Body, size: int) -> AsyncGenerator[tuple[Segment, bool], None]:
    """``(pieces, is_last)`` pairs, each the pieces (bytes or memoryviews, never copied) of at most
    ``size`` bytes; an empty body is one empty segment.

    A segment is only given out once a byte past it has arrived, so the caller
    knows whether it is the last one: a body of exactly ``size`` bytes stays
    one segment.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        view = memoryview(body)
        starts = range(0, max(len(view), 1), size)
        for i in starts:
            yield [view[i : i + size]], i == starts[-1]
        return
    pieces: Segment = []
    have = 0
    async for piece in body:
        pieces.append(piece)
        have += len(piece)
        while have > size:
            segment, pieces = split(pieces, size)
            have -= size
            yield segment, False
            del segment
    yield pieces, True


def _length(data: bytes | Segment) -> int:
    """The size of a body: one ``bytes``, or a segment's pieces."""
    return len(data) if isinstance(data, bytes) else sum(map(len, data))


def _request_body(data: bytes | Segment | None) -> tuple[object, dict[str, str]]:
    """What aiohttp is to send, and the headers that go with it.

    Pieces over ``SEND_SLICE`` in all go out as zero-copy slices (``send_slices``) with an
    explicit Content-Length; joining them would be one more copy of a whole segment.
    """
    if data is None or isinstance(data, bytes):
        data = [] if data is None else [data]
    size = _length(data)
    if size <= SEND_SLICE:
        return (b"".join(data) if data else None), {}
    return send_slices(data), {"Content-Length": str(size)}


def _update(sha: Any, pieces: Segment) -> None:
    for piece in pieces:
        sha.update(piece)


async def _hash(sha: Any, pieces: Segment) -> None:
    if _length(pieces) > MiB:  # hashlib drops the GIL: keep the event loop free on big segments
        await asyncio.to_thread(_update, sha, pieces)
    else:
        _update(sha, pieces)


async def put_large(
    region: SwiftRegion,
    name: str,
    key: str,
    first: Segment | None,
    parts: AsyncGenerator[tuple[Segment, bool], None],
    sha: Any,
    meta: dict[str, str],
    if_none_match: bool,
    if_match: str | None,
    write_id: str,
) -> tuple[Mapping[str, str], int, list[str]]:
    """Upload the segments (``first``, then the rest of ``parts``), then the manifest; the manifest
    PUT's headers, the size, and the segments of the object it replaced."""
    upload = f"{region.prefix}{int(time.time())}-{uuid.uuid4().hex}"
    segment_type = segment_content_type(key)
    started, size, sent = 0, 0, False

    async def every_segment() -> AsyncIterator[Segment]:
        nonlocal started, size, first
        data: Segment = first or []
        last, first = False, None
        while True:
            if started == SWIFT_MAX_SEGMENTS:
                raise RegionError(
                    f"body exceeds {SWIFT_MAX_SEGMENTS} segments of {region.segment_size} bytes",
                    region=region.name,
                    name=name,
                )
            started += 1
            size += _length(data)
            yield data
            if last:
                return
            data = []  # the upload task holds the segment; at most about two in memory
            data, last = await parts.__anext__()
            await _hash(sha, data)

    async def send(i: int, data: Segment) -> dict[str, Any]:
        seg = f"{upload}/{i:08d}"
        headers = await region._call(
            lambda: region._upload(region.segment_container, seg, data, {"Content-Type": segment_type}),
            name,
            size=_length(data),
        )
        return {
            "path": f"/{region.segment_container}/{seg}",
            "etag": headers.get("Etag", "").strip('"') or None,
            "size_bytes": _length(data),
        }

    try:
        manifest = await upload_ahead(every_segment(), send, budget=READ_AHEAD, size=_length)
        old = await region._replaced(name, key, if_match)
        content_type = encode_content_type(sha.hexdigest(), meta, write_id)
        sent = True
        headers = await region._put_object(
            name, key, json.dumps(manifest).encode(), content_type, if_none_match, query="multipart-manifest=put"
        )
    except BaseException as e:
        # A timeout, cancellation or 5xx after the manifest went out may hide a stored
        # manifest: then keep the segments. Otherwise nothing refers to them.
        refused = isinstance(e, RegionError) and not isinstance(e, Unavailable)
        if not sent or refused:
            paths = [f"/{region.segment_container}/{upload}/{i:08d}" for i in range(started)]
            await asyncio.shield(forget_segments(region, paths, name))
        raise
    return headers, size, old


async def segments_of(
    region: SwiftRegion, key: str, name: str | None = None, if_match: str | None = None, *, must_exist: bool = False
) -> list[str]:
    """Paths (``/container/object``) of the segments the current ``key`` is made of, if an SLO.

    With ``if_match``, :class:`PreconditionFailed` unless ``key`` is that write (or, unless
    ``must_exist``, missing).
    """
    try:
        resp = await region._send("HEAD", region.container, key)
    except aiohttp.ClientResponseError as e:
        if e.status == 404:
            if if_match is not None and must_exist:
                raise PreconditionFailed(
                    f"object is missing (if_match {if_match!r})", region=region.name, name=name
                ) from e
            return []
        raise
    resp.release()
    if if_match is not None:
        current = _etag(decode_content_type(resp.headers.get("Content-Type"))[2], resp.headers)
        if current != if_match:
            raise PreconditionFailed(f"object is another write (if_match {if_match!r})", region=region.name, name=name)
    if resp.headers.get("X-Static-Large-Object", "").lower() != "true":
        return []
    resp = await region._send("GET", region.container, key, query="multipart-manifest=get")
    try:
        manifest = json.loads(await resp.read())
    finally:
        resp.release()
    return [seg["name"] for seg in manifest if "name" in seg]


async def forget_segments(region: SwiftRegion, paths: list[str], name: str | None) -> int:
    """Delete segments no manifest refers to any more; return how many are gone. Best effort:
    leftovers are only space, and :func:`sweep_segments` finds them later."""
    mine = f"/{region.segment_container}/"
    paths = [p for p in paths if p.startswith(mine)]  # never delete beyond our segments container
    sem = asyncio.Semaphore(CLEANUP_CONCURRENCY)

    async def one(path: str) -> bool:
        async with sem:
            try:
                await region._call(lambda: region._delete_key(region.segment_container, path[len(mine) :]), name)
                return True
            except RegionError as e:
                log.warning("region %s: orphan segment left behind: %s", region.name, e)
                return False

    return sum(await asyncio.gather(*(one(p) for p in paths)))
