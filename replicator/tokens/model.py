"""A stored token: who holds it, what it may do, when it stops. The token itself is never kept,
only its SHA-256 (``keys.policy.tokens`` says why a plain hash is right for 256 random bits)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from keys import Principal

TOKEN_ID_PREFIX = "tok_"


class TokenStoreError(Exception):
    """The token store cannot do what was asked (bad input, a broken database)."""


class TokenStoreUnavailable(TokenStoreError):
    """The token store's database does not answer (retryable)."""


def new_token_id() -> str:
    """A public handle for a token (listed, revoked, logged); it opens nothing."""
    return TOKEN_ID_PREFIX + secrets.token_hex(6)


def iso(seconds: float | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    principal: str
    token_sha256: str = field(repr=False)
    scopes: tuple[str, ...]
    created_at: float  # unix seconds
    expires_at: float | None = None
    revoked_at: float | None = None
    client_subject: str | None = None
    client_san: str | None = None

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked`` (a revoked token says so even once past its expiry)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def refusal(self, now: float) -> str | None:
        """Why this token is refused now (a message naming the token id, never the token), or None."""
        state = self.state(now)
        if state == "revoked":
            return f"the token {self.token_id} (principal {self.principal!r}) was revoked at {iso(self.revoked_at)}"
        if state == "expired":
            return f"the token {self.token_id} (principal {self.principal!r}) expired at {iso(self.expires_at)}"
        return None

    def principal_of(self) -> Principal:
        return Principal(
            self.principal,
            self.token_sha256,
            frozenset(self.scopes),
            self.client_subject,
            self.client_san,
            token_id=self.token_id,
        )

    def listing(self, now: float) -> dict[str, object]:
        """What ``replicator tokens list --json`` shows: everything but the hash."""
        return {
            "id": self.token_id,
            "principal": self.principal,
            "scopes": list(self.scopes),
            "state": self.state(now),
            "created_at": iso(self.created_at),
            "expires_at": None if self.expires_at is None else iso(self.expires_at),
            "revoked_at": None if self.revoked_at is None else iso(self.revoked_at),
            "client_subject": self.client_subject,
            "client_san": self.client_san,
        }


COLUMNS = "token_id, principal, token_sha256, scopes, created_at, expires_at, revoked_at, client_subject, client_san"


def record_of(row) -> TokenRecord:
    """A row selected with ``COLUMNS`` (scopes as a JSON list), from either database."""
    return TokenRecord(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5], row[6], row[7], row[8])


def row_of(record: TokenRecord) -> tuple:
    r = record
    return (
        r.token_id,
        r.principal,
        r.token_sha256,
        json.dumps(sorted(r.scopes)),
        r.created_at,
        r.expires_at,
        r.revoked_at,
        r.client_subject,
        r.client_san,
    )
