"""replicator.replication.audit_ship on two local regions (the embedded default's driver): what is cut and shipped."""

from __future__ import annotations

import asyncio
import json

import pytest

from keys.audit import AuditKey, AuditLog
from regions.local import LocalRegion
from replicator.replication.audit_check import check_nodes
from replicator.replication.audit_ship import AuditShipper, Shipped, checkpoint_name, cut_segment, read_object

KEY = AuditKey.derive(b"\x05" * 32)


def _append(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(principal=f"p{i}", action="read", outcome="allowed")


@pytest.fixture
def regions(tmp_path):
    return {name: LocalRegion(tmp_path / name, name=name) for name in ("ca", "jp")}


def test_a_checkpoint_round_trips_and_a_bad_one_is_refused():
    shipped = Shipped(2, 7, 900, "ab" * 32)
    assert Shipped.decode(shipped.encode()) == shipped
    for bad in (b"{}", b"[]", b'{"segment":1,"seq":-1,"offset":0,"link":"x"}', b"not json"):
        with pytest.raises(ValueError, match="audit checkpoint"):
            Shipped.decode(bad)


def test_a_segment_stops_at_the_first_record_that_does_not_chain_on(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog.open(path, KEY) as log:
        _append(log, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    data, end = cut_segment(str(path), Shipped(), KEY)
    assert data == b"".join(lines) and (end.segment, end.seq, end.offset) == (1, 4, len(data))
    assert end.link == json.loads(lines[-1])["mac"]
    path.write_bytes(b"".join(lines[:2] + [lines[2].replace(b'"p2"', b'"xx"')] + lines[3:]))
    data, end = cut_segment(str(path), Shipped(), KEY)
    assert data == b"".join(lines[:2]) and end.seq == 2  # the edited record, and all after it, stay home
    assert cut_segment(str(path), Shipped(), KEY, limit=1)[1].seq == 1  # a limit cuts whole records


async def test_a_round_ships_to_both_regions_and_a_lagging_region_catches_up(tmp_path, regions):
    path = tmp_path / "audit.log"
    with AuditLog.open(path, KEY) as log:
        _append(log, 3)
        shipper = AuditShipper("n1", log, regions, KEY, interval=0.01)
        await shipper.ship_once()
        assert shipper.unshipped() == 0 and shipper.state() == "ok"
        (tmp_path / "not-a-dir").write_bytes(b"")
        shipper.regions["jp"] = LocalRegion(tmp_path / "not-a-dir", name="jp")  # a store that fails every call
        _append(log, 2)
        await shipper.ship_once()  # ca alone takes segment 2
        assert shipper.unshipped() == 2 and shipper.unshipped_age() > 0 and shipper.state().startswith("behind: jp")
        shipper.regions["jp"] = regions["jp"]
        await shipper.ship_once()  # jp copies segment 2 from ca
        assert shipper.unshipped() == 0
        for region in regions.values():
            assert Shipped.decode(await read_object(region, checkpoint_name("n1"))).seq == 5
        findings, held = await check_nodes(regions, KEY, {"n1": path})
        assert findings == [] and held == {"n1": 5}


async def test_rounds_that_overlap_ship_each_record_once(tmp_path, regions):
    """serve's background round and an explicit one may overlap while reads are audited. Here the
    first round's segment reaches ca late, and the second round's checkpoint later still: rounds that
    ran side by side would leave ca a checkpoint past its segment."""
    path = tmp_path / "audit.log"
    delays = {1: 0.05, 3: 0.1}  # ca's puts: the first round's segment, the second round's checkpoint
    with AuditLog.open(path, KEY) as log:

        class Busy(LocalRegion):
            puts = 0

            async def put(self, name, data, meta, **kw):  # type: ignore[no-untyped-def]
                _append(log, 1)  # a read is audited while a segment is on its way
                self.puts += 1
                await asyncio.sleep(delays.get(self.puts, 0) if self.name == "ca" else 0)
                return await super().put(name, data, meta, **kw)

        _append(log, 3)
        shipper = AuditShipper("n1", log, {n: Busy(tmp_path / n, name=n) for n in regions}, KEY)
        first = asyncio.create_task(shipper.ship_once())
        await asyncio.sleep(0.01)  # the first round waits on ca
        await shipper.ship_once()
        await first
        await shipper.ship_once()
        findings, held = await check_nodes(regions, KEY, {"n1": path})
        assert findings == [] and held["n1"] >= 3
