"""What the reconciler does with one name: a pure function, no I/O, no asyncio (h11's sans-IO idea).

Theory of operation
-------------------
The nightly reconciler walks both regions' listings together in byte order
(:func:`replicator.merge.merged`) and, for every name, hands what each region
listed to :func:`plan`. A listing entry carries everything needed (version,
digest, tombstone flag, class, write time, DEK id: :class:`Entry`), so planning
costs no request. ``plan`` returns the actions that make the two regions agree;
the executor (:mod:`replicator.reconcile.executor`) carries them out, and
before it destroys or overwrites anything it re-reads the target and acts only
if the target still holds exactly what the plan saw (``Action.a`` / ``Action.b``).

Rules, in the order they are applied. ``W`` is the *winner*, the entry with
the higher version (on a tie, A's: the service's read path also prefers its
first region); ``L`` is the other side (absent, older, or the same version).

1. The winner is live and its DEK was destroyed (the customer was erased):
   **shred** — delete the name in every region that holds it.
2. The winner is live and past its class's retention (``now - written >
   days``, exactly as the service's read path decides 410), or it is a kept
   version (``<object path>/<version>``, delete markers included) past its
   class's retention or ``keep_versions_days`` since it was superseded
   (:func:`replicator.retention.no_longer_kept`): **expire** —
   delete it in every region that holds it. Rules 1 and 2 come before any
   copy, so erased or expired data is never copied back. The other region's
   replica is deleted first and the winner last (and the executor stops a
   name at its first failure), so a run that stops half-way never leaves an
   older replica, or an older tombstone, as the newest thing left.
3. Same version on both sides:

   - one a tombstone and the other not: **conflict** (one stamp names two
     different writes; reported, nothing changes — an operator decides);
   - digests differ: **repair** — the executor reads both, and copies the
     copy that verifies over the one that does not (neither or both
     verifying is reported as a failure: which is right can only be told by
     decrypting, and the reconciler never decrypts);
   - both the same tombstone, older than the grace period and its class's
     ``keep_versions_days`` (so a delete marker is listed as long as what it
     deleted is kept), and not itself a kept version: **purge** — delete it
     in both regions;
   - otherwise: nothing.

4. ``L`` absent or older (the higher version wins):

   - ``W`` live: **copy** ``W`` over ``L`` (a newer write after a delete wins);
   - ``W`` a tombstone and ``L`` live: **delete** — copy the tombstone over
     the older live replica (a tombstone is an object; it is never lost);
   - ``W`` a tombstone and ``L`` absent or an older tombstone:
     **copy_tombstone**.

A tombstone that only one region holds is copied, never purged: it is purged
only once both regions hold it, so a region that missed the delete can never
bring the deleted object back. A body corrupted *behind* its metadata lists
the same digest as its good replica and is found by reads, not by listings
(the service's read path journals its repair).

The full decision table (``-`` absent, ``live v``/``tomb v`` version ``v``,
``v2 > v1``; A and B are symmetric except on ties)::

    A                 B                 condition              actions
    ----------------  ----------------  ---------------------  ------------------------------
    live v1 (W)       any               W's DEK destroyed      shred B if present, then A
    live v1 (W)       any               W past retention       expire B if present, then A
    kept v1 (W)       any               past retention or keep expire B if present, then A
    live v1 d1        live v1 d1        -                      none
    live v1 d1        live v1 d2        -                      repair (the copy that verifies wins)
    live v1           tomb v1           -                      conflict (reported only)
    tomb v1           live v1           -                      conflict (reported only)
    tomb v1           tomb v1           age <= grace           none
    tomb v1           tomb v1           age > grace and keep   purge B, then A
    live v2           -                 -                      copy A->B
    live v2           live v1           -                      copy A->B
    live v2           tomb v1           -                      copy A->B
    tomb v2           -                 -                      copy_tombstone A->B
    tomb v2           tomb v1           -                      copy_tombstone A->B
    tomb v2           live v1           -                      delete B (tombstone A->B)
    -                 -                 -                      (cannot happen: no listing holds it)

Names whose metadata the replicator did not write (``Entry.of`` raises
``ValueError``) never reach the planner: the executor reports them and leaves
them alone.

What counts against ``--max-delete``: every region delete (shred, expire,
purge) and every tombstone written over a live replica (delete).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Literal

from regions import ObjectInfo
from replicator.hlc import Version
from replicator.layout import ObjectMeta
from replicator.retention import DAY_MS, expired, no_longer_kept

Side = Literal["a", "b"]
Kind = Literal["copy", "copy_tombstone", "delete", "repair", "conflict", "shred", "expire", "purge"]

#: Every kind of action, in report order.
KINDS: tuple[str, ...] = ("copy", "copy_tombstone", "delete", "repair", "conflict", "shred", "expire", "purge")
#: Kinds that remove a live object or a whole name from a region (counted by ``--max-delete``).
DELETING: frozenset[str] = frozenset({"delete", "shred", "expire", "purge"})


@dataclass(frozen=True, slots=True)
class Entry:
    """What one region's listing says about a name."""

    version: Version
    digest: str
    tombstone: bool
    data_class: str
    written_ms: int
    dek_id: str = ""
    size: int = 0
    superseded_ms: int | None = None  # a kept version (replicator.layout.VersionPath)

    @classmethod
    def of(cls, info: ObjectInfo) -> Entry:
        """The entry for a listed object; ``ValueError`` if the replicator did not write its metadata."""
        meta = ObjectMeta.of(info)
        return cls(
            meta.version,
            info.digest,
            meta.tombstone,
            meta.data_class,
            meta.written_ms,
            meta.dek_id,
            info.size,
            meta.superseded_ms,
        )

    def same(self, other: Entry | None) -> bool:
        """Whether ``other`` is this very replica (same version and bytes)."""
        return other is not None and other.version == self.version and other.digest == self.digest


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do for ``name``.

    ``dst`` is the region that changes and ``src`` the one copied from (both
    ``None`` for a repair, where reading decides, and for a conflict). ``a``
    and ``b`` are the entries the plan was made from: the executor acts only
    while the regions still hold exactly these.
    """

    kind: Kind
    name: str
    src: Side | None
    dst: Side | None
    a: Entry | None
    b: Entry | None

    @property
    def deletes(self) -> bool:
        return self.kind in DELETING

    def entry(self, side: Side) -> Entry | None:
        return self.a if side == "a" else self.b

    @property
    def size(self) -> int:
        """Bytes this action moves (the source's size; a repair's larger side)."""
        sizes = [e.size for e in (self.a, self.b) if e is not None]
        if self.kind == "repair":
            return max(sizes, default=0)
        source = self.entry(self.src) if self.src is not None else None
        return source.size if source is not None else 0


def plan(
    name: str,
    a: Entry | None,
    b: Entry | None,
    *,
    now_ms: int,
    retention: Mapping[str, int | None],
    destroyed: Container[str],
    grace_ms: int,
    keep: Mapping[str, int] | None = None,
) -> list[Action]:
    """The actions that bring region A's ``a`` and region B's ``b`` for ``name`` level (see the module doc)."""
    if a is None and b is None:
        return []
    w: Entry
    side: Side
    other: Side
    if b is None or (a is not None and a.version >= b.version):
        assert a is not None
        w, side, other, lose = a, "a", "b", b
    else:
        w, side, other, lose = b, "b", "a", a

    def on_both(kind: Kind) -> list[Action]:  # the other side first, the winner last
        return [Action(kind, name, None, s, a, b) for s in (other, side) if (a if s == "a" else b) is not None]

    if not w.tombstone:
        if w.dek_id and w.dek_id in destroyed:
            return on_both("shred")
        if expired(w, now_ms, retention):
            return on_both("expire")
    if no_longer_kept(w, now_ms, retention, keep or {}):
        return on_both("expire")
    if lose is not None and lose.version == w.version:
        if lose.tombstone != w.tombstone:
            return [Action("conflict", name, None, None, a, b)]
        if lose.digest != w.digest:
            return [Action("repair", name, None, None, a, b)]
        if w.tombstone and w.superseded_ms is None and now_ms - w.written_ms > _purge_after(w, grace_ms, keep):
            return on_both("purge")
        return []
    if not w.tombstone:
        kind: Kind = "copy"
    elif lose is not None and not lose.tombstone:
        kind = "delete"
    else:
        kind = "copy_tombstone"
    return [Action(kind, name, side, other, a, b)]


def _purge_after(tomb: Entry, grace_ms: int, keep: Mapping[str, int] | None) -> int:
    """How long a tombstone stays: the grace period, or its class's keep window if that is longer."""
    return max(grace_ms, (keep or {}).get(tomb.data_class, 0) * DAY_MS)
