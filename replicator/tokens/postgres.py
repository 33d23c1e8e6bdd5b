"""The token store on the cluster's PostgreSQL: the journal's schema and connections plumbing
(``replicator.journal.pgpool``: password by reference, failover), its own tables and version table
(``replicator.journal.pgschema.migrate(component="tokens", version_table="tokens_version")``)."""

from __future__ import annotations

import asyncpg

from replicator.journal.pgconnect import UNAVAILABLE
from replicator.journal.pgpool import PgPool
from replicator.journal.pgschema import migrate
from replicator.journal.pgurl import parse_url
from replicator.tokens.model import COLUMNS, TokenRecord, TokenStoreError, TokenStoreUnavailable, record_of, row_of
from replicator.tokens.schema import COMPONENT, PG_MIGRATIONS, VERSION_TABLE


class PgTokenStore:
    def __init__(self, url: str):
        self.target = parse_url(url)
        self._where = f"{self.target.shown} (schema {self.target.schema})"
        self._db = PgPool(
            self.target,
            application="replicator-tokens",
            migrate=lambda conn: migrate(
                conn, self.target.schema, migrations=PG_MIGRATIONS, component=COMPONENT, version_table=VERSION_TABLE
            ),
            error=self._error,
            passthrough=(TokenStoreError,),
            what="token store",
        )

    def __repr__(self) -> str:
        return f"PgTokenStore({self._where!r})"

    def _error(self, what: str, e: BaseException) -> Exception:
        if isinstance(e, LookupError):  # the password variable is not set
            return TokenStoreError(f"token store {self._where}: {e}")
        if isinstance(e, UNAVAILABLE):
            return TokenStoreUnavailable(f"token store {self._where} is unavailable ({what}): {type(e).__name__}")
        return TokenStoreError(f"token store {self._where}: {what} failed: {type(e).__name__}")

    async def create(self, record: TokenRecord) -> None:
        async def create(c: asyncpg.Connection) -> None:
            try:
                await c.execute(
                    f"INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", *row_of(record)
                )
            except asyncpg.UniqueViolationError:
                raise TokenStoreError(f"a token with id {record.token_id} or the same hash exists") from None
            await c.execute("UPDATE api_token_generation SET n = n + 1")

        await self._db.run("create", create, tx=True)

    async def revoke(self, token_id: str, at: float) -> TokenRecord | None:
        async def revoke(c: asyncpg.Connection) -> TokenRecord | None:
            done = await c.execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE token_id = $1 AND revoked_at IS NULL", token_id, at
            )
            if done != "UPDATE 0":
                await c.execute("UPDATE api_token_generation SET n = n + 1")
            row = await c.fetchrow(f"SELECT {COLUMNS} FROM api_tokens WHERE token_id = $1", token_id)
            return None if row is None else record_of(tuple(row))

        return await self._db.run("revoke", revoke, tx=True)

    async def records(self) -> list[TokenRecord]:
        rows = await self._db.run("read", lambda c: c.fetch(f"SELECT {COLUMNS} FROM api_tokens ORDER BY created_at"))
        return [record_of(tuple(r)) for r in rows]

    async def generation(self) -> int:
        return await self._db.run("poll", lambda c: c.fetchval("SELECT n FROM api_token_generation"))

    async def close(self) -> None:
        await self._db.close()
