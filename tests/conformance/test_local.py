"""The local-directory driver through the conformance suite."""

import os
from pathlib import Path

import pytest

from regions import ByteRange
from regions.local import LocalRegion
from tests.support.localstore import flip_byte, rewrite_stored

from .suite import Harness, RegionConformance


class LocalHarness(Harness):
    def __init__(self, tmp_root: Path):
        self.tmp_root = tmp_root

    async def make_region(self):
        return LocalRegion(self.tmp_root / os.urandom(6).hex(), name="local", page_size=self.page_size)

    async def destroy_region(self, region):
        pass  # pytest's tmp_path cleans up

    async def corrupt(self, region, name):
        rewrite_stored(region, name, flip_byte())

    async def make_down_region(self):
        # A root below a regular file: every open fails, as on a dead disk mount.
        return LocalRegion("/dev/null/region", name="local")


class TestLocal(RegionConformance):
    @pytest.fixture
    def harness(self, tmp_path):
        return LocalHarness(tmp_path)

    async def test_ranged_get_reads_only_the_range(self, region, monkeypatch):
        import regions._files

        reads, read_at = [], regions._files.read_at

        def spy(fh, at, end):
            chunk = read_at(fh, at, end)
            reads.append((at, len(chunk)))
            return chunk

        monkeypatch.setattr(regions._files, "read_at", spy)
        data = os.urandom(3 << 20)  # a data file, not inline
        await region.put("f", data, {})
        info, stream = await region.get("f", byte_range=ByteRange(2_000_000, 2_000_099))
        assert b"".join([c async for c in stream]) == data[2_000_000:2_000_100] and info.size == len(data)
        assert reads == [(2_000_000, 100)]  # one positioned read of the range, nothing before it
        reads.clear()
        _, stream = await region.get("f", byte_range=ByteRange(len(data) - 5, len(data) + 5))
        assert b"".join([c async for c in stream]) == data[-5:] and reads == [(len(data) - 5, 5)]
