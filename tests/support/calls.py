"""Counting the calls of one object's async method, in place: how many statements or queries went out."""

from __future__ import annotations

from typing import Any


class Calls:
    """Wraps ``obj.method`` (a coroutine method) so each call is counted in ``count``."""

    def __init__(self, obj: Any, method: str) -> None:
        self.count = 0
        real = getattr(obj, method)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await real(*args, **kwargs)

        setattr(obj, method, counted)
