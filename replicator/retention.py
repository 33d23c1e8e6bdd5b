"""The retention rules: when an object, or a kept version of one, is past what its class keeps.

One rule for every reader of it: the read path answers 410 from the moment
it holds, and the reconciler deletes what it holds for. A kept version
(``replicator.layout.VersionPath``) is held to both: its class's retention,
counted from its own write like any object's, and ``keep_versions_days``,
counted from when it was superseded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from keys import Policy

DAY_MS = 86_400_000


class Written(Protocol):
    """What the rule looks at: the object's class and write time."""

    @property
    def data_class(self) -> str: ...

    @property
    def written_ms(self) -> int: ...


def retention_of(policy: Policy) -> dict[str, int | None]:
    """Each class's retention in days (``None``: kept until erasure), as :func:`expired` reads it."""
    return {name: dc.retention_days for name, dc in policy.classes.items()}


class Kept(Written, Protocol):
    """A kept version: also when it was superseded (None: an object's current state)."""

    @property
    def superseded_ms(self) -> int | None: ...


def keep_of(policy: Policy) -> dict[str, int]:
    """Each class's ``keep_versions_days``, as :func:`no_longer_kept` reads it."""
    return {name: dc.keep_versions_days for name, dc in policy.classes.items()}


def no_longer_kept(obj: Kept, now_ms: int, retention: Mapping[str, int | None], keep: Mapping[str, int]) -> bool:
    """A kept version past its class's retention or past ``keep_versions_days`` since it was
    superseded (strictly more, as :func:`expired`); an object's current state never is."""
    sup = obj.superseded_ms
    if sup is None:
        return False
    return expired(obj, now_ms, retention) or now_ms - sup > keep.get(obj.data_class, 0) * DAY_MS


def expired(obj: Written, now_ms: int, retention: Mapping[str, int | None]) -> bool:
    """Past its class's retention: strictly more than ``days`` since the write. A class kept until
    erasure (``None``), or one the policy does not know, never expires."""
    days = retention.get(obj.data_class)
    return days is not None and now_ms - obj.written_ms > days * DAY_MS
