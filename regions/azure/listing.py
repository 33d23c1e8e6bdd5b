"""Azure's List Blobs answer turned into ObjectInfo, and its order turned into UTF-8 byte order.

An object's user metadata is stored as blob metadata, each value
percent-encoded; the SHA-256 of the body rides along under the reserved key
``x_sha256``. A listing entry carries the same fields as a HEAD.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote
from xml.etree import ElementTree

from ..base import ObjectInfo

DIGEST_KEY = "x_sha256"
_META_PREFIX = "x-ms-meta-"
_META_PREFIX_LEN = len(_META_PREFIX)


def _encode_value(value: str) -> str:
    # Header values must be ASCII. Azurite silently trims leading/trailing blanks;
    # Azure trims them before checking the signature (403) and refuses empty values.
    # So percent-encode everything, and write "" as a lone "%", which quote() never produces.
    return quote(value, safe="") if value else "%"


def _decode_value(stored: str) -> str:
    return "" if stored == "%" else unquote(stored)


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def info_of_properties(name: str, props: Any) -> ObjectInfo:
    """The ObjectInfo of the SDK's ``BlobProperties`` (of a HEAD, a download or a listing)."""
    stored = dict(props.metadata or {})
    digest = stored.pop(DIGEST_KEY, "")  # none: no body matches "", so get reports Corrupt
    meta = {k: _decode_value(v) for k, v in stored.items() if not k.startswith("x_")}
    return ObjectInfo(
        name=name, size=props.size, digest=digest, meta=meta, modified=props.last_modified, etag=_etag(props.etag)
    )


def info_of_headers(name: str, headers: Mapping[str, str]) -> ObjectInfo:
    """The ObjectInfo of a Get Blob's response headers, equal to ``info_of_properties`` of the
    SDK's download of the same blob."""
    stored = {k[_META_PREFIX_LEN:].lower(): v for k, v in headers.items() if k.lower().startswith(_META_PREFIX)}
    digest = stored.pop(DIGEST_KEY, "")
    meta = {k: _decode_value(v) for k, v in stored.items() if not k.startswith("x_")}
    return ObjectInfo(
        name=name,
        size=int(headers["Content-Length"]),
        digest=digest,
        meta=meta,
        modified=_http_date(headers["Last-Modified"]),
        etag=_etag(headers.get("ETag")),
    )


def _parse(xml: bytes) -> ElementTree.Element:
    """The element tree of one List Blobs page."""
    return ElementTree.fromstring(xml)


def _entry(blob: ElementTree.Element, skip: int) -> ObjectInfo:
    """The ObjectInfo of one ``<Blob>`` of a listing."""
    props = blob.find("Properties")
    if props is None:
        raise ElementTree.ParseError("a listed blob has no Properties")
    digest, meta = "", {}
    stored = blob.find("Metadata")
    for item in stored if stored is not None else ():
        key = item.tag
        if key == DIGEST_KEY:
            digest = item.text or ""
        elif not key.startswith("x_"):
            meta[key] = _decode_value(item.text or "")
    return ObjectInfo(
        name=(blob.findtext("Name") or "")[skip:],
        size=int(props.findtext("Content-Length") or 0),
        digest=digest,
        meta=meta,
        modified=_http_date(props.findtext("Last-Modified")),
        etag=_etag(props.findtext("Etag")),
    )


@functools.lru_cache(maxsize=1024)
def _http_date(text: str | None) -> datetime | None:
    # Cached: parsing is a third of an entry's cost, and a page's blobs share few distinct seconds.
    return parsedate_to_datetime(text) if text else None


async def _utf8_order(
    store: Callable[[str], AsyncIterator[ObjectInfo]], prefix: str, branch: int | None = None
) -> AsyncIterator[ObjectInfo]:
    """Turn the store's listing order into UTF-8 byte order, in bounded memory.

    Azure (and Azurite) sort names by UTF-16 code units, so a character above
    U+FFFF (a surrogate pair, D800-DFFF) sorts *before* U+E000-U+FFFF, where
    UTF-8 byte order puts it after; all other pairs compare alike. So whenever
    the listing reaches the first name that has such a character at position
    ``k`` after a common stem ``q``, we first list ``q`` again and yield its
    U+E000-U+FFFF branch (ordered the same way, recursively), then skip that
    branch when the main listing reaches it. ASCII-only names cost nothing.

    ``branch`` is set on those nested listings: only names whose character at
    ``branch`` is in U+E000-U+FFFF belong to it.
    """
    depth = len(prefix) if branch is None else branch + 1
    done: list[str] = []  # stems whose U+E000-U+FFFF branch is yielded already; each extends the last
    prev: str | None = None
    async for info in store(prefix):
        name = info.name
        if not done and branch is None and name.isascii():
            prev = name  # nothing to reorder around an ASCII name: the hot path
            yield info
            continue
        if branch is not None and not (len(name) > branch and _bmp_high(name[branch])):
            continue
        while done and not name.startswith(done[-1]):
            done.pop()
        skip = any(len(name) > len(q) and _bmp_high(name[len(q)]) for q in done)
        common = _common_prefix(prev, name) if prev is not None else 0
        after_pair = prev is not None and len(prev) > common and prev[common] > "\uffff"
        prev = name
        if skip:
            continue
        for k in range(max(depth, common), len(name)):
            if name[k] > "\uffff" and (k > common or not after_pair):
                async for early in _utf8_order(store, name[:k], branch=k):
                    yield early
                done.append(name[:k])
        yield info


def _bmp_high(ch: str) -> bool:
    return "\ue000" <= ch <= "\uffff"


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # stops at the shorter: a common prefix
        if x != y:
            break
        n += 1
    return n
