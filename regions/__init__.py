"""Object stores behind one narrow async interface (see :mod:`regions.base`).

:mod:`regions.portable` is the layer every region shares; :mod:`regions.driver`
is what a store provides behind it.
"""

from ._retry import RetryPolicy
from .base import (
    Body,
    ByteRange,
    Corrupt,
    Features,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    Reader,
    Region,
    RegionError,
    SegmentSweep,
    SegmentSweeper,
    Unavailable,
)
from .portable import Observer, PortableRegion

__all__ = [
    "Body",
    "ByteRange",
    "Corrupt",
    "Features",
    "NotFound",
    "ObjectInfo",
    "Observer",
    "PermissionDenied",
    "PortableRegion",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "Reader",
    "Region",
    "RegionError",
    "RetryPolicy",
    "SegmentSweep",
    "SegmentSweeper",
    "Unavailable",
]
