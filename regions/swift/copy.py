"""Swift's copy inside the store: ``PUT`` with ``X-Copy-From`` (the copy middleware).

The source is looked at first (a ``HEAD``): our etag, the write id, lives in
its Content-Type, which Swift cannot put a condition on; Swift's own ETag of
that write can, so the copy carries it as ``If-Match`` (Swift evaluates a
copy's conditions on the source). The target gets its own Content-Type: the
source's digest, the new metadata and a new write id. A static large object
is copied whole into one object (Swift joins its segments itself), so a
source over Swift's ``max_file_size`` is not copied here: the caller reads
and puts it instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from ..base import ObjectInfo, PreconditionFailed
from .wire import _etag, _timestamp, decode_content_type, encode_content_type, new_write_id

if TYPE_CHECKING:
    from .driver import SwiftRegion


async def copy_inside(
    region: SwiftRegion, source: str, target: str, info: ObjectInfo, meta: dict[str, str]
) -> ObjectInfo:
    container, key = region.container, region._key(source)

    async def look() -> tuple[str, str]:
        resp = await region._send("HEAD", container, key)
        resp.release()
        return _etag(decode_content_type(resp.headers.get("Content-Type"))[2], resp.headers), resp.headers["ETag"]

    ours, swifts = await region._call(look, source)
    if ours != info.etag:
        raise PreconditionFailed("the source holds another write", region=region.name, name=source)
    write_id = new_write_id()
    headers = {
        "Content-Type": encode_content_type(info.digest, meta, write_id),
        "X-Copy-From": quote(f"/{container}/{key}"),
        "If-Match": swifts,
    }
    answer = await region._call(
        lambda: region._upload(container, region._key(target), b"", headers), target, size=info.size
    )
    return ObjectInfo(
        name=target, size=info.size, digest=info.digest, meta=meta, modified=_timestamp(answer), etag=write_id
    )
