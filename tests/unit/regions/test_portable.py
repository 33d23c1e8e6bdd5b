"""regions.portable: the observer hook and the declared features, on the local driver."""

import pytest

from regions import ByteRange, Corrupt, Features, NotFound, RangeNotSatisfiable
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


class Lying(LocalRegion):
    """A driver that ignores the range it is given: the portable layer must not pass that on."""

    def __init__(self, root, extra: bytes):
        super().__init__(root, name="r")
        self.extra = extra

    async def _get(self, name, byte_range=None):
        info, stream = await super()._get(name)

        async def whole():
            async for chunk in stream:
                yield chunk
            yield self.extra

        return info, whole()


async def test_a_ranged_read_of_the_wrong_length_is_corrupt_and_one_past_the_end_never_served(tmp_path):
    region = Lying(tmp_path, b"")
    await region.put("a", b"0123456789", {})
    _, stream = await region.get("a", byte_range=ByteRange(2, 4))  # the driver sends all 10 bytes
    with pytest.raises(Corrupt):
        [c async for c in stream]
    with pytest.raises(RangeNotSatisfiable):  # the driver did not say so: the portable layer does
        await region.get("a", byte_range=ByteRange(10, 12))
    _, stream = await region.get("a", byte_range=ByteRange(0, 99))  # clipped to 10: exactly right
    assert b"".join([c async for c in stream]) == b"0123456789"
    await region.close()


async def test_a_ranged_get_is_observed_as_a_get(tmp_path):
    region = LocalRegion(tmp_path, name="r")
    region.observer = seen = Seen()
    await region.put("a", b"xyz", {})
    _, stream = await region.get("a", byte_range=ByteRange(1, 1))
    assert b"".join([c async for c in stream]) == b"y"
    with pytest.raises(RangeNotSatisfiable):
        await region.get("a", byte_range=ByteRange(3, 3))
    assert seen.calls[1:] == [("r", "get", "a", "ok"), ("r", "get", "a", "RangeNotSatisfiable")]
    await region.close()
