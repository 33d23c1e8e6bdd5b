"""The planner's decision table (the module docstring of replicator.reconcile.planner), row by row."""

import dataclasses

import pytest

from replicator.hlc import Version
from replicator.reconcile.planner import DELETING, Entry, expired, plan
from replicator.retention import DAY_MS

NOW = 1_800_000_000_000
GRACE = 7 * DAY_MS
RETENTION = {"account": None, "visit": 90, "session": 30}
DESTROYED = {"dek_gone"}


def live(v: int, digest: str = "d1", *, cls: str = "account", age_days: float = 1, dek: str = "dek_ok") -> Entry:
    return Entry(Version(v, 0, "n1"), digest, False, cls, NOW - int(age_days * DAY_MS), dek, 100 + v)


def tomb(v: int, *, age_days: float = 1) -> Entry:
    return Entry(Version(v, 0, "n1"), "e3b0", True, "account", NOW - int(age_days * DAY_MS), "", 0)


def run(a, b, name="v1/tag/account/n"):
    return plan(name, a, b, now_ms=NOW, retention=RETENTION, destroyed=DESTROYED, grace_ms=GRACE)


def shape(actions):
    return [(x.kind, x.src, x.dst) for x in actions]


# (row, A, B, expected [(kind, src, dst)]) — the table in the planner's docstring, in order.
TABLE = [
    ("W's DEK destroyed, both hold it", live(2, dek="dek_gone"), live(1), [("shred", None, "b"), ("shred", None, "a")]),
    ("W's DEK destroyed, only A holds it", live(2, dek="dek_gone"), None, [("shred", None, "a")]),
    ("W's DEK destroyed, B holds it", None, live(2, dek="dek_gone"), [("shred", None, "b")]),
    (
        "W past retention, both",
        live(2, cls="visit", age_days=91),
        live(2, cls="visit", age_days=91),
        [("expire", None, "b"), ("expire", None, "a")],
    ),
    (
        "W past retention, over an older tombstone",
        live(2, cls="visit", age_days=91),
        tomb(1),
        [("expire", None, "b"), ("expire", None, "a")],
    ),
    ("W past retention, B only", None, live(2, cls="session", age_days=31), [("expire", None, "b")]),
    ("same live replica", live(1), live(1), []),
    ("same version, digests differ", live(1, "d1"), live(1, "d2"), [("repair", None, None)]),
    ("same version, live and tombstone", live(1), tomb(1), [("conflict", None, None)]),
    ("same version, tombstone and live", tomb(1), live(1), [("conflict", None, None)]),
    ("same tombstone, within grace", tomb(1, age_days=6), tomb(1, age_days=6), []),
    (
        "same tombstone, past grace",
        tomb(1, age_days=8),
        tomb(1, age_days=8),
        [("purge", None, "b"), ("purge", None, "a")],
    ),
    ("live, missing in B", live(2), None, [("copy", "a", "b")]),
    ("live, missing in A", None, live(2), [("copy", "b", "a")]),
    ("live over older live", live(2), live(1), [("copy", "a", "b")]),
    ("older live under newer live", live(1), live(2), [("copy", "b", "a")]),
    ("newer write after a delete wins", live(2), tomb(1), [("copy", "a", "b")]),
    ("newer write after a delete wins (B)", tomb(1), live(2), [("copy", "b", "a")]),
    ("tombstone, missing in B", tomb(2), None, [("copy_tombstone", "a", "b")]),
    ("tombstone, missing in A", None, tomb(2), [("copy_tombstone", "b", "a")]),
    ("tombstone over older tombstone", tomb(2), tomb(1), [("copy_tombstone", "a", "b")]),
    ("tombstone over older live", tomb(2), live(1), [("delete", "a", "b")]),
    ("tombstone over older live (B)", live(1), tomb(2), [("delete", "b", "a")]),
    ("nothing anywhere", None, None, []),
]


@pytest.mark.parametrize("row, a, b, expected", TABLE, ids=[r[0] for r in TABLE])
def test_decision_table(row, a, b, expected):
    actions = run(a, b)
    assert shape(actions) == expected
    for action in actions:  # every action carries the snapshot it was planned from
        assert (action.a, action.b, action.name) == (a, b, "v1/tag/account/n")


def test_a_lone_tombstone_past_grace_is_copied_not_purged():
    # Purged only once both regions hold it: a region that missed the delete might still hold the object.
    assert shape(run(tomb(2, age_days=100), None)) == [("copy_tombstone", "a", "b")]
    assert shape(run(tomb(2, age_days=100), live(1, age_days=200))) == [("delete", "a", "b")]


def test_an_expired_or_shredded_object_is_never_copied_back():
    assert all(a.kind == "expire" for a in run(None, live(5, cls="visit", age_days=90.01)))
    assert all(a.kind == "shred" for a in run(live(5, dek="dek_gone"), tomb(1)))


def test_retention_is_decided_on_the_winner():
    # The older replica is past retention, the newer is not: copy the newer over it.
    assert shape(run(live(2, cls="visit", age_days=10), live(1, cls="visit", age_days=95))) == [("copy", "a", "b")]


def test_retention_boundary_matches_the_service():
    # The service: expired when now - written > days (strictly).
    at = Entry(Version(1, 0, "n1"), "d", False, "visit", NOW - 90 * DAY_MS, "dek_ok")
    assert not expired(at, NOW, RETENTION)
    assert expired(at, NOW + 1, RETENTION)
    assert run(at, at) == []


def test_unknown_class_never_expires_and_tombstones_never_shred():
    assert run(live(1, cls="mystery", age_days=10_000), live(1, cls="mystery", age_days=10_000)) == []
    assert run(tomb(1), tomb(1)) == []  # no DEK on a tombstone


def test_ties_go_to_a_and_a_destroyed_dek_on_b_alone_is_decided_by_a():
    # Same version: A is the winner (the service's read preference order).
    a, b = live(1, "d1"), live(1, "d1", dek="dek_gone")
    assert run(a, b) == []
    assert shape(run(b, a)) == [("shred", None, "b"), ("shred", None, "a")]


def test_deletes_of_both_replicas_take_the_winner_last():
    # A run that stops between the two must not leave an older replica as the newest one.
    assert shape(run(tomb(1), live(2, cls="visit", age_days=100))) == [("expire", None, "a"), ("expire", None, "b")]
    assert shape(run(live(1, dek="dek_gone"), live(2, dek="dek_gone"))) == [("shred", None, "a"), ("shred", None, "b")]


def test_version_order_is_the_hlc_order():
    a = Entry(Version(5, 1, "n1"), "x", False, "account", NOW, "dek_ok")
    b = Entry(Version(5, 0, "n2"), "y", False, "account", NOW, "dek_ok")
    assert shape(run(a, b)) == [("copy", "a", "b")]
    c = Entry(Version(5, 1, "n2"), "y", False, "account", NOW, "dek_ok")
    assert shape(run(a, c)) == [("copy", "b", "a")]  # node id breaks a tie in ms and counter


def test_deleting_kinds_and_sizes():
    assert DELETING == {"delete", "shred", "expire", "purge"}
    [copy] = run(live(2), None)
    assert copy.size == live(2).size and not copy.deletes
    [repair] = run(live(1, "d1"), Entry(Version(1, 0, "n1"), "d2", False, "account", NOW, "dek_ok", 999))
    assert repair.size == 999
    assert all(a.deletes and a.size == 0 for a in run(tomb(1, age_days=30), tomb(1, age_days=30)))
    assert run(tomb(2), live(1))[0].deletes


def test_entry_of_a_listing():
    from regions import ObjectInfo
    from replicator.layout import ObjectMeta

    meta = ObjectMeta(Version(7, 0, "n1"), "visit", 123, dek_id="dek_x").to_meta()
    e = Entry.of(ObjectInfo("n", 42, "abc", meta))
    assert e == Entry(Version(7, 0, "n1"), "abc", False, "visit", 123, "dek_x", 42)
    with pytest.raises(ValueError):
        Entry.of(ObjectInfo("n", 1, "abc", {"foo": "bar"}))
    with pytest.raises(ValueError):
        Entry.of(ObjectInfo("n", 1, "abc", {**meta, "version": "garbage"}))


def test_the_docstring_holds_the_table():
    import replicator.reconcile.planner as planner

    doc = planner.__doc__
    for kind in ("shred", "expire", "repair", "conflict", "purge", "copy A->B", "copy_tombstone", "delete B"):
        assert kind in doc


# -- kept versions (replicator.layout.VersionPath): keep_versions_days, and retention over it ---------------------

KEEP = {"account": 30, "visit": 60, "session": 0}


def kept(e: Entry, superseded_days_ago: float) -> Entry:
    return dataclasses.replace(e, superseded_ms=NOW - int(superseded_days_ago * DAY_MS))


def run_kept(a, b):
    return shape(
        plan("v1/t/account/n/v", a, b, now_ms=NOW, retention=RETENTION, destroyed=DESTROYED, grace_ms=GRACE, keep=KEEP)
    )


KEPT_TABLE = [
    ("kept, within the window, both", kept(live(1), 29), kept(live(1), 29), []),
    ("kept, within the window, missing in B", kept(live(1), 29), None, [("copy", "a", "b")]),
    ("kept, missing in A", None, kept(live(1), 1), [("copy", "b", "a")]),
    ("kept, digests differ", kept(live(1, "d1"), 1), kept(live(1, "d2"), 1), [("repair", None, None)]),
    ("kept, past the window", kept(live(1), 31), kept(live(1), 31), [("expire", None, "b"), ("expire", None, "a")]),
    ("kept, past the window, B only", None, kept(live(1), 31), [("expire", None, "b")]),
    ("kept delete marker, within the window", kept(tomb(1, age_days=20), 10), kept(tomb(1, age_days=20), 10), []),
    (
        "kept delete marker, past the window (never purged by the grace)",
        kept(tomb(1, age_days=40), 31),
        kept(tomb(1, age_days=40), 31),
        [("expire", None, "b"), ("expire", None, "a")],
    ),
    (
        "kept visit version past retention, within its keep window",
        kept(live(1, cls="visit", age_days=91), 41),
        None,
        [("expire", None, "a")],
    ),
    (
        "kept version of an erased customer",
        kept(live(1, dek="dek_gone"), 1),
        kept(live(1, dek="dek_gone"), 1),
        [("shred", None, "b"), ("shred", None, "a")],
    ),
    ("a tombstone stays for its class's keep window", tomb(1, age_days=8), tomb(1, age_days=8), []),
    (
        "a tombstone past its class's keep window",
        tomb(1, age_days=31),
        tomb(1, age_days=31),
        [("purge", None, "b"), ("purge", None, "a")],
    ),
]


@pytest.mark.parametrize("row, a, b, expected", KEPT_TABLE, ids=[r[0] for r in KEPT_TABLE])
def test_kept_version_table(row, a, b, expected):
    assert run_kept(a, b) == expected
