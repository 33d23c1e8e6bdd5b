"""The fault-injection wrapper keeps the Region contract while it is up, and is Unavailable when down."""

import pytest

from tests.support.faulty import FaultyRegion

from .suite import RegionConformance
from .test_local import LocalHarness


class FaultyHarness(LocalHarness):
    async def make_region(self):
        return FaultyRegion(await super().make_region())

    async def corrupt(self, region, name):
        await super().corrupt(region.inner, name)

    async def make_down_region(self):
        region = FaultyRegion(await super().make_region())
        region.down = True
        return region


class TestFaulty(RegionConformance):
    @pytest.fixture
    def harness(self, tmp_path):
        return FaultyHarness(tmp_path)
