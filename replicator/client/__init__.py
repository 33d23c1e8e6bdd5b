"""replicator.client: the Python client of the replicator's HTTP API, for backend services.

``Client`` (blocking, over httpx) and ``AsyncClient`` (asyncio, over aiohttp)
make the same calls; uploads and downloads stream (an object is never held whole unless
you ask with ``read``); every read takes the ``purpose`` it is made for;
every error answer raises the exception of its code (``errors.ERRORS``); and
idempotent or conditional calls are tried again on 429/5xx and dropped
connections, honouring ``Retry-After`` (``retry.py`` says exactly when).

It imports nothing of the service (an import-linter contract in
``pyproject.toml``) and needs only the ``client`` extra: ``pip install
'replicator[client]'``. The guide: ``docs/client.md``.
"""

from replicator.client.aio import AsyncClient, AsyncDownload
from replicator.client.errors import (
    ERRORS,
    ApiError,
    BadRequest,
    Forbidden,
    Gone,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    ReplicatorError,
    SinRefused,
    TooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
)
from replicator.client.models import (
    ByteRange,
    ContentRange,
    DeleteResult,
    ErasureReceipt,
    ErasureStatus,
    ListPage,
    ObjectEntry,
    ObjectHead,
    Readiness,
    ReadInfo,
    RegionProgress,
    VersionEntry,
    WriteResult,
    etag,
)
from replicator.client.retry import RetryPolicy
from replicator.client.sync import Client, Download

__all__ = [
    "ERRORS",
    "ApiError",
    "AsyncClient",
    "AsyncDownload",
    "BadRequest",
    "ByteRange",
    "Client",
    "ContentRange",
    "DeleteResult",
    "Download",
    "ErasureReceipt",
    "ErasureStatus",
    "Forbidden",
    "Gone",
    "InternalError",
    "ListPage",
    "MethodNotAllowed",
    "NotFound",
    "ObjectEntry",
    "ObjectHead",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "ReadInfo",
    "Readiness",
    "RegionProgress",
    "ReplicatorError",
    "RetryPolicy",
    "SinRefused",
    "TooLarge",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "VersionEntry",
    "WriteResult",
    "etag",
]
