"""The look-up decision (replicator.paths.lookup's module doc), row by row: which replica wins,
which regions are owed a copy, and when a late region is waited for."""

import pytest

from regions import ObjectInfo, Unavailable
from replicator.hlc import Version
from replicator.layout import ObjectMeta
from replicator.paths.lookup import Replica, decide, owed_copies, wait_for_late

ORDER = ["ca", "jp"]  # read preference first


def replica(region: str, v: int, *, tombstone: bool = False, digest: str = "d") -> Replica:
    meta = ObjectMeta(Version(v, 0, "n1"), "account", 1_000, tombstone=tombstone)
    return Replica(region, ObjectInfo("v1/c/account/n", 0 if tombstone else 10, digest, meta.to_meta()), meta)


DOWN = Unavailable("down", region="x")
FOREIGN = ValueError("object has no 'version' metadata")  # metadata we did not write

# (ca's answer, jp's answer) -> (winning region, each region's state, regions owed a copy)
TABLE = [
    ("both current", replica("ca", 2), replica("jp", 2), "ca", ("current", "current"), []),
    (
        "tie: the preferred region's replica",
        replica("ca", 2, digest="x"),
        replica("jp", 2, digest="y"),
        "ca",
        ("current", "current"),
        [],
    ),
    ("jp newer", replica("ca", 1), replica("jp", 2), "jp", ("stale", "current"), ["ca"]),
    ("ca newer", replica("ca", 3), replica("jp", 2), "ca", ("current", "stale"), ["jp"]),
    ("missing in jp", replica("ca", 1), None, "ca", ("current", "missing"), ["jp"]),
    ("missing in ca", None, replica("jp", 1), "jp", ("missing", "current"), ["ca"]),
    ("missing in both", None, None, None, ("missing", "missing"), []),
    ("a newer tombstone wins", replica("ca", 1), replica("jp", 2, tombstone=True), "jp", ("stale", "current"), ["ca"]),
    ("jp down: no copy owed to it", replica("ca", 1), DOWN, "ca", ("current", "unavailable"), []),
    ("both down", DOWN, DOWN, None, ("unavailable", "unavailable"), []),
    ("foreign metadata counts as missing", FOREIGN, replica("jp", 1), "jp", ("missing", "current"), ["ca"]),
]


@pytest.mark.parametrize("case, ca, jp, winner, states, owed", TABLE, ids=[row[0] for row in TABLE])
def test_decide(case, ca, jp, winner, states, owed):
    found = decide(ORDER, [ca, jp])
    assert (found.winner.region if found.winner else None) == winner
    assert tuple(found.state(r) for r in ORDER) == states
    assert owed_copies(ORDER, found) == owed
    assert set(found.failures) == {r for r, a in zip(ORDER, [ca, jp], strict=True) if a is DOWN}


def test_an_error_that_is_not_a_region_error_is_a_bug_and_is_raised():
    with pytest.raises(KeyError):
        decide(ORDER, [replica("ca", 1), KeyError("bug")])


@pytest.mark.parametrize(
    "behind, answered, wait",
    [
        (set(), {"ca"}, False),  # the journal owes nothing: the answering region is current
        ({"jp"}, {"ca"}, False),  # owed only to the late region: it is the one behind
        ({"ca"}, {"ca"}, True),  # the answering region is owed work: the late one may be newer
        ({"ca", "jp"}, {"ca"}, True),
        (None, {"ca"}, True),  # the journal cannot say: wait (the safe side)
    ],
)
def test_wait_for_late(behind, answered, wait):
    assert wait_for_late(behind, answered) is wait
