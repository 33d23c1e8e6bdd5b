"""The retention rule: when an object of a class is past its class's retention.

One rule for every reader of it: the read path answers 410 from the moment
it holds, and the reconciler deletes what it holds for.
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


def expired(obj: Written, now_ms: int, retention: Mapping[str, int | None]) -> bool:
    """Past its class's retention: strictly more than ``days`` since the write. A class kept until
    erasure (``None``), or one the policy does not know, never expires."""
    days = retention.get(obj.data_class)
    return days is not None and now_ms - obj.written_ms > days * DAY_MS
