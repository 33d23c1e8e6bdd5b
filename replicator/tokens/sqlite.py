"""The token store in the journal's SQLite file (one node): tables of its own and its own version
table, migrated in one ``BEGIN IMMEDIATE`` by whichever process opens it first. Another process (the
``replicator tokens`` command beside a running ``serve``) writes the same file; WAL mode lets the
server keep reading meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from replicator.tokens.model import COLUMNS, TokenRecord, TokenStoreError, TokenStoreUnavailable, record_of, row_of
from replicator.tokens.schema import SQLITE_MIGRATIONS, VERSION_TABLE

T = TypeVar("T")


class SqliteTokenStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._sync(_migrate)

    def __repr__(self) -> str:
        return f"SqliteTokenStore({str(self.path)!r})"

    def _sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:  # locked for longer than the busy timeout
                raise TokenStoreUnavailable(f"token store {self.path}: {e}") from None
            try:
                result = fn(self._db)
                self._db.execute("COMMIT")
                return result
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._sync, fn)

    async def create(self, record: TokenRecord) -> None:
        def create(db: sqlite3.Connection) -> None:
            try:
                db.execute(f"INSERT INTO api_tokens ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row_of(record))
            except sqlite3.IntegrityError:
                raise TokenStoreError(f"a token with id {record.token_id} or the same hash exists") from None
            _bump(db)

        await self._tx(create)

    async def revoke(self, token_id: str, at: float) -> TokenRecord | None:
        def revoke(db: sqlite3.Connection) -> TokenRecord | None:
            if db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (at, token_id)
            ).rowcount:
                _bump(db)
            row = db.execute(f"SELECT {COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()
            return None if row is None else record_of(row)

        return await self._tx(revoke)

    async def records(self) -> list[TokenRecord]:
        rows = await self._tx(lambda db: db.execute(f"SELECT {COLUMNS} FROM api_tokens ORDER BY created_at").fetchall())
        return [record_of(r) for r in rows]

    async def generation(self) -> int:
        return await self._tx(lambda db: db.execute("SELECT n FROM api_token_generation").fetchone()[0])

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def _bump(db: sqlite3.Connection) -> None:
    db.execute("UPDATE api_token_generation SET n = n + 1")


def _migrate(db: sqlite3.Connection) -> None:
    db.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at REAL)")
    current = db.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()[0]
    latest = SQLITE_MIGRATIONS[-1][0]
    if current > latest:
        raise TokenStoreError(
            f"token store schema is at version {current}, newer than this replicator knows ({latest}): upgrade"
        )
    for version, sql in SQLITE_MIGRATIONS:
        if version > current:
            for statement in filter(str.strip, sql.split(";")):  # executescript would commit our transaction
                db.execute(statement)
            db.execute(f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES (?, julianday('now'))", (version,))
