"""A region on OpenStack Swift behind Keystone v3 (ConoHa Object Storage).

One module per job: :mod:`.driver` (the region and its requests), :mod:`.auth`
(Keystone tokens), :mod:`.wire` (the stored Content-Type and error
translation), :mod:`.large` (static large objects), :mod:`.sweep` (orphan
segments).
"""

from ..base import SegmentSweep
from .driver import SwiftRegion
from .wire import (
    decode_content_type,
    encode_content_type,
    key_of_segment,
    new_write_id,
    segment_content_type,
)

__all__ = [
    "SegmentSweep",
    "SwiftRegion",
    "decode_content_type",
    "encode_content_type",
    "key_of_segment",
    "new_write_id",
    "segment_content_type",
]
