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


def segment_sweeper(region):
    """The region's orphan-segment sweep (Swift's ``sweep_segments``), looking through wrappers
    that keep their driver as ``inner``; None for a store that leaves no segments."""
    while region is not None:
        sweep = getattr(region, "sweep_segments", None)
        if sweep is not None:
            return sweep
        region = getattr(region, "inner", None)
    return None


__all__ = [
    "Body", "Corrupt", "NotFound", "ObjectInfo", "PermissionDenied", "PreconditionFailed",
    "Region", "RegionError", "RetryPolicy", "Unavailable", "segment_sweeper",
]
