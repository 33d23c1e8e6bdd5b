"""A key service in memory: what the keyring does with any ``ServiceKek``, without a server.

The tests that need the real service (Barbican on the dev stack) are in
``tests/integration/test_barbican_kek.py``; this stand-in lets the unit tests
take the service down and count fetches.
"""

from __future__ import annotations

import os

from keys.provider import KeyServiceError, ServiceKek


class MemoryKek(ServiceKek):
    """The KEK ``key`` (32 random bytes unless given) at ``ref``; ``down`` makes every call fail as
    a service that does not answer would."""

    kind = "barbican"

    def __init__(self, ref: str, key: bytes | None = None) -> None:
        self._ref = ref
        self.key = key if key is not None else os.urandom(32)
        self.down = False
        self.fetches = 0
        self.probes = 0

    @property
    def ref(self) -> str:
        return self._ref

    def __repr__(self) -> str:
        return f"MemoryKek({self._ref!r})"

    def fetch(self) -> bytes:
        self._answer()
        self.fetches += 1
        return self.key

    def probe(self, timeout: float | None = None) -> None:
        self._answer()
        self.probes += 1

    def _answer(self) -> None:
        if self.down:
            raise KeyServiceError(self._ref, "no answer from the key service (ConnectFailure)", service="Barbican")
