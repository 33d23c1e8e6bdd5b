"""Object-store drivers behind one narrow async interface (see :mod:`regions.base`)."""

from .base import (
    Body,
    Corrupt,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    PreconditionFailed,
    Region,
    RegionError,
    Unavailable,
)
from ._retry import RetryPolicy

__all__ = [
    "Body", "Corrupt", "NotFound", "ObjectInfo", "PermissionDenied", "PreconditionFailed",
    "Region", "RegionError", "RetryPolicy", "Unavailable",
]
