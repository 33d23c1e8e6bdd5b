"""The conformance tests of ranged reads (``get(name, byte_range=...)``), part of every driver's suite.

See "Byte ranges" in :mod:`regions.base`: both ends included, a range past
the end clipped, one starting at or after the end ``RangeNotSatisfiable``, a
malformed one a ``ValueError`` before any I/O, the info of the whole object,
and no whole-object digest check.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from regions import ByteRange, Corrupt, NotFound, RangeNotSatisfiable

MiB = 1 << 20


async def read_range(region, name: str, start: int, end: int):
    info, stream = await region.get(name, byte_range=ByteRange(start, end))
    return info, b"".join([c async for c in stream])


class RangeConformance:
    """Mixed into :class:`tests.conformance.suite.RegionConformance`; uses its ``region`` and ``harness``."""

    def ranges(self, size: int) -> list[tuple[int, int]]:
        """Ranges every driver must serve from an object of ``size`` bytes (ends included)."""
        mid = size // 3
        part = self.harness.part_size or size // 2
        out = [
            (0, 0),  # the first byte
            (0, min(99, size - 1)),  # at the start
            (mid, mid + min(1000, size - mid - 1)),  # in the middle
            (size - 1, size - 1),  # the last byte
            (max(size - 10, 0), size + 1000),  # running past the end: clipped
            (0, size - 1),  # the whole object
            (0, size),  # one byte too many: clipped
            (mid, mid),  # one byte in the middle
        ]
        if part < size - 1:  # across a block / segment boundary, and across two
            out += [(part - 10, part + 10), (part - 1, part), (part - 1, min(2 * part, size - 1))]
        return out

    @pytest.mark.parametrize("size", [1, 1000, None], ids=["1B", "small", "large"])
    async def test_range_reads_exactly_those_bytes(self, region, size):
        size = size or self.harness.large_size
        data = os.urandom(size)
        put = await region.put("r", data, {"k": "v"})
        for start, end in self.ranges(size):
            info, body = await read_range(region, "r", start, end)
            assert body == data[start : end + 1], (start, end)
            # The info is the whole object's, whatever the range.
            assert (info.name, info.size, info.digest, info.etag) == ("r", size, put.digest, put.etag)
            assert dict(info.meta) == {"k": "v"}

    async def test_range_of_a_streamed_large_object_across_segments(self, region):
        data = os.urandom(self.harness.large_size)

        async def body():
            for i in range(0, len(data), 300_000):
                yield data[i : i + 300_000]

        await region.put("big", body(), {})
        part = self.harness.part_size or MiB
        for start, length in [(part - 5, 10), (part // 2, 2 * part), (len(data) - part - 3, part + 3)]:
            _, got = await read_range(region, "big", start, start + length - 1)
            assert len(got) == length and got == data[start : start + length]

    async def test_range_helpers(self):
        assert ByteRange(0, 0).length == 1 and ByteRange.of(10, 5) == ByteRange(10, 14)
        assert ByteRange(5, 100).within(50) == ByteRange(5, 49)
        assert ByteRange(5, 10).within(50) == ByteRange(5, 10)
        assert ByteRange(50, 60).within(50) is None and ByteRange(0, 0).within(0) is None

    async def test_range_starting_at_or_past_the_end_is_not_satisfiable(self, region):
        await region.put("s", b"0123456789", {})
        await region.put("empty", b"", {})
        for name, start, end in [("s", 10, 10), ("s", 10, 20), ("s", 11, 11), ("s", 1 << 40, 1 << 41), ("empty", 0, 0)]:
            with pytest.raises(RangeNotSatisfiable) as e:
                await region.get(name, byte_range=ByteRange(start, end))
            assert name in str(e.value) and region.name in str(e.value)
        large = await region.put("big", os.urandom(self.harness.large_size), {})
        with pytest.raises(RangeNotSatisfiable):
            await region.get("big", byte_range=ByteRange(large.size, large.size + 5))
        _, last = await read_range(region, "big", large.size - 1, large.size + 5)
        assert len(last) == 1

    async def test_range_of_a_missing_object_is_not_found(self, region):
        with pytest.raises(NotFound):
            await region.get("nothing", byte_range=ByteRange(0, 10))

    async def test_malformed_ranges_are_value_errors_before_any_io(self, harness, region):
        for bad in [(-1, 5), (5, 4), (0, -1), (0.0, 1), (True, 2)]:
            with pytest.raises(ValueError):
                ByteRange(*bad)
        for length in (0, -3):
            with pytest.raises(ValueError):
                ByteRange.of(0, length)
        with pytest.raises(ValueError):  # a range is a ByteRange, not a tuple
            await region.get("x", byte_range=(0, 1))
        down = await harness.make_down_region()
        try:  # no store to ask: a ValueError, not Unavailable, so nothing was sent
            with pytest.raises(ValueError):
                await down.get("x", byte_range=(0, 1))
            with pytest.raises(ValueError):
                await down.get("x", byte_range=object.__new__(ByteRange))
        finally:
            await down.close()

    async def test_ranged_read_does_not_check_the_whole_digest(self, region):
        # The caller authenticates what it reads (our segments carry GCM tags): a ranged read
        # hands out the stored bytes as they are, where a whole read reports the damage.
        data = os.urandom(1000)
        await region.put("c", data, {})
        await self.harness.corrupt(region, "c")
        info, head = await read_range(region, "c", 0, 99)
        assert head == data[:100] and info.digest == hashlib.sha256(data).hexdigest()
        _, around = await read_range(region, "c", 490, 509)
        assert len(around) == 20 and around != data[490:510]
        with pytest.raises(Corrupt):
            _, stream = await region.get("c")
            [c async for c in stream]

    async def test_closing_a_ranged_reader_early(self, region):
        data = os.urandom(self.harness.large_size)
        await region.put("big", data, {})
        _, stream = await region.get("big", byte_range=ByteRange(1, len(data) - 2))
        first = await anext(stream)
        assert first == data[1 : 1 + len(first)]
        await stream.aclose()
        assert (await read_range(region, "big", 7, 7))[1] == data[7:8]
