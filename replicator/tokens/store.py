"""The token store's contract, and opening it where the journal lives (the same URL): a SQLite
file for one node, the shared PostgreSQL for a cluster."""

from __future__ import annotations

from typing import Protocol

from replicator.tokens.model import TokenRecord


class TokenStore(Protocol):
    """Tokens as records. Every create and revoke bumps ``generation`` in the same transaction, so a
    reader that saw generation n and sees n again has seen every change."""

    async def create(self, record: TokenRecord) -> None:
        """Add ``record``; ``TokenStoreError`` if its id or hash is taken."""

    async def revoke(self, token_id: str, at: float) -> TokenRecord | None:
        """Mark the token revoked at ``at`` (unix seconds) unless it already is; the record as it is
        now, or None if no token has that id."""

    async def records(self) -> list[TokenRecord]:
        """Every token, revoked and expired ones included (so a refusal can say why)."""

    async def generation(self) -> int: ...

    async def close(self) -> None: ...


def open_token_store(journal_url: str) -> TokenStore:
    """The token store beside the journal ``journal_url`` names (its own tables, its own versions)."""
    if journal_url.startswith("sqlite:///"):
        from replicator.tokens.sqlite import SqliteTokenStore

        return SqliteTokenStore(journal_url.removeprefix("sqlite:///"))
    if journal_url.startswith(("postgresql://", "postgres://")):
        from replicator.tokens.postgres import PgTokenStore

        return PgTokenStore(journal_url)
    raise ValueError(f"no token store for the journal URL scheme {journal_url.split(':', 1)[0]!r}")
