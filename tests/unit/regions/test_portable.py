"""regions.portable: the observer hook and the declared features, on the local driver."""

import pytest

from regions import Features, NotFound
from regions.local import LocalRegion
from regions.swift import SwiftRegion


class Seen:
    def __init__(self):
        self.calls = []

    def observe(self, region, op, name, outcome, seconds):
        assert seconds >= 0
        self.calls.append((region, op, name, outcome))


async def test_every_call_is_observed_with_its_outcome(tmp_path):
    region = LocalRegion(tmp_path, name="r")
    region.observer = seen = Seen()
    await region.put("a", b"x", {})
    with pytest.raises(NotFound):
        await region.head("b")
    _, stream = await region.get("a")
    assert b"".join([c async for c in stream]) == b"x"
    assert [i.name async for i in region.list()] == ["a"]
    await region.delete("a")
    assert seen.calls == [
        ("r", "put", "a", "ok"),
        ("r", "head", "b", "NotFound"),
        ("r", "get", "a", "ok"),
        ("r", "list", None, "ok"),
        ("r", "delete", "a", "ok"),
    ]
    await region.close()


async def test_features_are_declared_not_probed(tmp_path):
    local = LocalRegion(tmp_path, name="r")
    assert local.features == Features() and local.features.sweep_segments is None
    swift = SwiftRegion("cloud", "c", name="jp")  # no I/O until the first call
    assert swift.features.sweep_segments == swift.sweep_segments
    await local.close()
    await swift.close()
