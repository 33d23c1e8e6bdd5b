"""A region observed by the replicator's RegionLog keeps the Region contract, and every call is measured."""

import pytest

from replicator.observe.metrics import Metrics
from replicator.observe.regions import RegionLog

from .suite import RegionConformance
from .test_local import LocalHarness


class ObservedHarness(LocalHarness):
    def __init__(self, tmp_root):
        super().__init__(tmp_root)
        self.metrics = Metrics()

    async def make_region(self):
        region = await super().make_region()
        region.observer = RegionLog(self.metrics)
        return region

    async def make_down_region(self):
        region = await super().make_down_region()
        region.observer = RegionLog(self.metrics)
        return region


class TestObserved(RegionConformance):
    @pytest.fixture
    def harness(self, tmp_path):
        return ObservedHarness(tmp_path)

    async def test_ops_are_measured_by_region_op_and_outcome(self, harness, region):
        await region.put("m", b"x", {})
        with pytest.raises(Exception):
            await region.head("missing")
        text = harness.metrics.exposition().decode()
        assert 'replicator_region_op_seconds_count{op="put",outcome="ok",region="local"} 1.0' in text
        assert 'op="head",outcome="NotFound",region="local"' in text
