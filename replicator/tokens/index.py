"""What a ``serve`` node knows of the token store: every token by hash, refreshed by polling.

Theory of operation
-------------------
The node reads the store's generation counter every ``poll`` seconds (1 s: one one-row query) and
reloads every token only when the counter moved, so a ``replicator tokens create`` or ``revoke``
run anywhere reaches every node within about a second, with no restart. Polling, not SIGHUP or
PostgreSQL LISTEN/NOTIFY: it is one code path for the SQLite file and the shared PostgreSQL; a
signal reaches one process on one machine, never the other nodes; and a notification sent while a
node reconnects (a failover) is lost, so LISTEN would need this poll behind it anyway.

Fail closed: if the store has not been read for ``stale_after`` seconds (5 s, the promise that a
revocation reaches every node within 5 s), a token that is not the policy file's is answered 503
rather than trusted or refused as unknown: the node cannot tell whether it was revoked, or made,
meanwhile. Tokens of the policy file do not depend on the store.

Expiry needs no poll: it is compared with the clock at every request. The gauge
``replicator_token_expires_timestamp_seconds{principal}`` is the time a principal's last live token
(not revoked, not yet expired) expires; a principal with a live token that never expires is left
out (it does not lose access), so an alert on it fires only when access is really about to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from keys import Principal
from replicator.tokens.model import TokenRecord
from replicator.tokens.store import TokenStore

log = logging.getLogger("replicator.tokens")

POLL_SECONDS = 1.0
STALE_AFTER = 5.0
EXPIRES_GAUGE = "replicator_token_expires_timestamp_seconds"


@dataclass(frozen=True)
class Refused:
    """A store token that is known and refused: ``status`` 401 (expired or revoked) or 503 (the
    store could not be read lately); ``message`` names the token id and why, never the token."""

    status: int
    message: str


class TokenIndex:
    def __init__(
        self,
        store: TokenStore,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        poll: float = POLL_SECONDS,
        stale_after: float = STALE_AFTER,
    ):
        self.store = store
        self._clock = clock
        self._poll = poll
        self._stale_after = stale_after
        self._by_hash: dict[bytes, TokenRecord] = {}
        self._generation: int | None = None
        self._read_at: float | None = None  # monotonic time of the last successful poll
        self._failures = 0
        self._expires = Gauge(
            EXPIRES_GAUGE,
            "Unix time at which the principal's last live expiring token expires (tokens made by replicator tokens)",
            ["principal"],
            registry=registry,
        )
        self._exported: set[str] = set()

    async def refresh(self) -> None:
        """Read the generation; reload every token if it moved. Raises the store's errors."""
        generation = await self.store.generation()
        if generation != self._generation:
            records = await self.store.records()
            self._by_hash = {bytes.fromhex(r.token_sha256): r for r in records}
            self._generation = generation
        self._read_at = time.monotonic()
        self._export()

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged (the first of a run of failures, and every
        30th) and tried again next period."""
        while True:
            try:
                await self.refresh()
                if self._failures:
                    log.info("token store readable again", extra={"failed_polls": self._failures})
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._failures % 30 == 0:
                    log.warning("token store poll failed", extra={"error": str(e) or type(e).__name__})
                self._failures += 1
            await asyncio.sleep(self._poll)

    def lookup(self, token: str) -> Principal | Refused | None:
        """The principal of a live store token, why a token is refused, or None (no store token).

        A token known to be expired or revoked is refused 401 whatever the store's state; any other is
        refused 503 while the store has not been read for ``stale_after`` seconds (it may have been
        revoked, or made, meanwhile)."""
        record = self._by_hash.get(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())
        why = record.refusal(self._clock()) if record is not None else None
        if why is not None:
            return Refused(401, why)
        if self._read_at is None or time.monotonic() - self._read_at > self._stale_after:
            which = f"token {record.token_id}" if record is not None else "this token"
            return Refused(
                503,
                f"the token store has not been readable for over {self._stale_after:g} s: cannot check {which} "
                "(retry later, or use a token of the policy file)",
            )
        return record.principal_of() if record is not None else None

    def _export(self) -> None:
        now = self._clock()
        last: dict[str, float | None] = {}
        for r in self._by_hash.values():
            if r.state(now) != "active":
                continue
            seen = last.get(r.principal, 0.0)
            last[r.principal] = None if r.expires_at is None or seen is None else max(seen, r.expires_at)
        shown = {name: at for name, at in last.items() if at is not None}
        for gone in self._exported - shown.keys():
            self._expires.remove(gone)
        for name, at in shown.items():
            self._expires.labels(name).set(at)
        self._exported = set(shown)
