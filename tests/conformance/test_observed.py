"""The logging/metrics wrapper keeps the Region contract: it runs the whole suite over a local region."""

import pytest

from replicator.observe.metrics import Metrics
from replicator.observe.regions import ObservedRegion

from .suite import RegionConformance
from .test_local import LocalHarness


class ObservedHarness(LocalHarness):
    def __init__(self, tmp_root):
        super().__init__(tmp_root)
        self.metrics = Metrics()

    async def make_region(self):
        return ObservedRegion(await super().make_region(), self.metrics)

    async def corrupt(self, region, name):
        await super().corrupt(region.inner, name)

    async def make_down_region(self):
        return ObservedRegion(await super().make_down_region(), self.metrics)


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
