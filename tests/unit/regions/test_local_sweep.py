"""The local driver's clean-up of abandoned uploads never removes another open region's upload in flight."""

from regions.local import LocalRegion


async def test_only_a_lone_opener_sweeps_tmp(tmp_path):
    first = LocalRegion(tmp_path, name="r")
    await first.put("warm", b"x", {})  # opened: it holds open.lock
    in_flight = tmp_path / "tmp" / "upload-of-another-process"
    in_flight.write_bytes(b"partial")
    second = LocalRegion(tmp_path, name="r")  # another process opening the same directory
    await second.head("warm")
    assert in_flight.exists()
    await first.close()
    await second.close()
    third = LocalRegion(tmp_path, name="r")  # alone: what is left is abandoned
    await third.head("warm")
    assert not in_flight.exists()
    await third.close()
