"""Unwrapped data keys held in memory: a bounded LRU, so a process does not unwrap on every call.

The one place plaintext keys live in a provider (the keyring file's and the key store's). A
destroyed key is dropped at once (``forget``, ``keep_only``); the caller holds its own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

DEFAULT_CACHE_SIZE = 10_000


class KeyCache:
    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        self._size = size

    def get(self, dek_id: str) -> bytes | None:
        key = self._keys.get(dek_id)
        if key is not None:
            self._keys.move_to_end(dek_id)
        return key

    def put(self, dek_id: str, key: bytes) -> None:
        self._keys[dek_id] = key
        self._keys.move_to_end(dek_id)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def forget(self, dek_id: str) -> None:
        self._keys.pop(dek_id, None)

    def keep_only(self, alive: Container[str]) -> None:
        """Drop every key whose id is not in ``alive`` (destroyed elsewhere)."""
        for dek_id in [d for d in self._keys if d not in alive]:
            del self._keys[dek_id]

    def clear(self) -> None:
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, dek_id: object) -> bool:
        return dek_id in self._keys
