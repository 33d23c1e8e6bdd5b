"""Helpers to seed regions with what the service writes, for the reconciler's tests and bench.

Bodies are random bytes: the reconciler never decrypts, so it cannot tell.
"""

from __future__ import annotations

import base64
import hashlib
import os

from regions import Region
from replicator.hlc import Version
from replicator.layout import ObjectMeta, ObjectPath

DAY_MS = 86_400_000


def tag(seed: str) -> str:
    """A 32-character lower-case base32 tag, as keys.tags makes them."""
    return base64.b32encode(hashlib.sha256(seed.encode()).digest()[:20]).decode().lower()


def path(customer: str, name: str, data_class: str = "account") -> str:
    return str(ObjectPath(tag("c:" + customer), data_class, tag(f"n:{customer}:{data_class}:{name}")))


def meta(
    version: Version,
    *,
    data_class: str = "account",
    written_ms: int | None = None,
    tombstone: bool = False,
    dek: str = "dek_test",
) -> dict[str, str]:
    return ObjectMeta(
        version=version,
        data_class=data_class,
        written_ms=version.ms if written_ms is None else written_ms,
        tombstone=tombstone,
        dek_id="" if tombstone else dek,
        sealed_name="" if tombstone else "sealed",
    ).to_meta()


async def put_live(region: Region, name: str, version: Version, body: bytes | None = None, **kw) -> bytes:
    body = os.urandom(64) if body is None else body
    await region.put(name, body, meta(version, **kw))
    return body


async def put_tomb(region: Region, name: str, version: Version, **kw) -> None:
    await region.put(name, b"", meta(version, tombstone=True, **kw))


async def state(region: Region, prefix: str = "v1/") -> dict[str, tuple[str, str, bool]]:
    """name -> (version, digest, tombstone) as the region lists it."""
    return {i.name: (i.meta.get("version", ""), i.digest, i.meta.get("tomb") == "1") async for i in region.list(prefix)}
