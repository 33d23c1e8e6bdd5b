"""Azure's copy inside the store: Copy Blob within the account, pinned to the source's ETag.

Copy Blob (``start_copy_from_url``) reads the source inside the storage service, so no
byte of it crosses to the caller; within one account the request's own credential
(account key, SAS or Entra token) stands for the source too. ``x-ms-source-if-match``
pins the copy to the write the caller saw (412 otherwise), and the metadata given
replaces the source's. A copy within an account has most often ended when Azure answers
("success"); one still "pending" is looked at again until it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob.aio import ContainerClient

from ..base import Unavailable
from ._fast import blob_url

POLL = 0.1  # s between looks at a pending copy


async def copy_inside(
    container: ContainerClient,
    source_key: str,
    target_key: str,
    etag: str,
    metadata: dict[str, str],
    call: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
    *,
    region: str,
) -> tuple[str, Any]:
    """Copy the blob ``source_key`` (as of ``etag``) to ``target_key`` with ``metadata``; the
    target's ETag and last-modified time. ``call`` runs a request under the driver's retries
    and error translation."""
    blob = container.get_blob_client(target_key)
    answer = await call(
        lambda: blob.start_copy_from_url(
            blob_url(container, source_key),
            metadata=metadata,
            source_etag=f'"{etag}"',
            source_match_condition=MatchConditions.IfNotModified,
        )
    )
    status, tag, modified = answer.get("copy_status"), answer.get("etag"), answer.get("last_modified")
    while status == "pending":
        await asyncio.sleep(POLL)
        props = await call(blob.get_blob_properties)
        status, tag, modified = props.copy.status, props.etag, props.last_modified
    if status != "success":
        raise Unavailable(f"Copy Blob ended {status!r}", region=region, name=target_key)
    return tag, modified
