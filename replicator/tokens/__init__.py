"""Service tokens with a life: made, listed and revoked by ``replicator tokens``, with an optional
expiry, stored hashed beside the journal (SQLite file or the shared PostgreSQL) in tables of their
own, and picked up by every ``serve`` node within a second (:mod:`.index`)."""

from replicator.tokens.model import TokenRecord, TokenStoreError, TokenStoreUnavailable, new_token_id
from replicator.tokens.store import TokenStore, open_token_store

__all__ = [
    "TokenRecord",
    "TokenStore",
    "TokenStoreError",
    "TokenStoreUnavailable",
    "new_token_id",
    "open_token_store",
]
