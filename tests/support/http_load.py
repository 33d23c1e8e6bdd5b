"""HTTP clients that PUT new names and DELETE some of them through a running service, sending again
after each 503 until answered, with a ledger of the version each name's last answered request got.

Every name gets its requests one at a time (a PUT, then perhaps a DELETE), so the version of the
last answered one is the newest that name can hold: a request that was never answered came before it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class HttpLedger:
    versions: dict[str, str] = field(default_factory=dict)  # name -> version of its last answered request
    unresolved: set[str] = field(default_factory=set)  # names whose last request got no answer in time
    statuses: Counter = field(default_factory=Counter)  # (method, status) -> count
    unexpected: list[str] = field(default_factory=list)  # neither an answer nor a 503
    answered: list[tuple[float, float, str]] = field(default_factory=list)  # (started, answered, method)

    def first_ack_started_after(self, moment: float) -> float | None:
        return min((done for started, done, _ in self.answered if started > moment), default=None)

    def acked_after(self, moment: float) -> Counter:
        return Counter(method for started, _, method in self.answered if started > moment)


class HttpLoad:
    """``clients`` tasks on ``base`` (``/v1/objects/<customer>/account/...``) until :meth:`stop`."""

    def __init__(self, base: str, token: str, customer: str, clients: int = 4, seed: int = 0, patience: float = 30):
        self.prefix = f"{base}/v1/objects/{customer}/account"
        self.auth = {"Authorization": f"Bearer {token}"}
        self.clients = clients
        self.rng = random.Random(seed)
        self.patience = patience  # seconds a request is sent again after the load was told to stop
        self.ledger = HttpLedger()
        self._stop = asyncio.Event()
        self._stopped_at = 0.0
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        # aiohttp sends a request again on its own when a kept-alive connection drops: the ledger
        # would count one request where the service saw two.
        self._session._retry_connection = False  # type: ignore[attr-defined]
        self._tasks = [asyncio.create_task(self._client(k)) for k in range(self.clients)]

    async def stop(self) -> None:
        self._stopped_at = time.monotonic()
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self._session is not None:
                await self._session.close()

    async def _client(self, k: int) -> None:
        i = 0
        while not self._stop.is_set():
            name = f"c{k}/n{i:05d}"
            i += 1
            if not await self._until_answered("PUT", name, os.urandom(self.rng.randrange(1, 2048))):
                continue
            if self.rng.random() < 0.4:
                await self._until_answered("DELETE", name)

    async def _until_answered(self, method: str, name: str, body: bytes | None = None) -> bool:
        assert self._session is not None
        while True:
            if self._stop.is_set() and time.monotonic() > self._stopped_at + self.patience:
                self.ledger.unresolved.add(name)
                return False
            started = time.monotonic()
            try:
                async with self._session.request(method, f"{self.prefix}/{name}", data=body, headers=self.auth) as r:
                    status, payload = r.status, await r.read()
            except (TimeoutError, aiohttp.ClientError) as e:
                self.ledger.unexpected.append(f"{method} {name}: {type(e).__name__}: {e}")
                self.ledger.unresolved.add(name)
                return False
            self.ledger.statuses[(method, status)] += 1
            if status == 503:  # not acknowledged (the journal is away): send it again
                await asyncio.sleep(0.05)
                continue
            if status not in (200, 201):
                self.ledger.unexpected.append(f"{method} {name}: {status} {payload[:200]!r}")
                return False
            answer = json.loads(payload)
            if answer["regions"].get("jp") != "pending":  # jp refuses everything: journaled, always
                self.ledger.unexpected.append(f"{method} {name}: jp not pending: {answer}")
            self.ledger.versions[name] = answer["version"]
            self.ledger.unresolved.discard(name)
            self.ledger.answered.append((started, time.monotonic(), method))
            return True
