"""The local-directory driver through the conformance suite."""

import os
from pathlib import Path

import pytest

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
