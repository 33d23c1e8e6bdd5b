"""The token store's tables: its own, beside the journal's, with its own version table
(``tokens_version``), so it never takes a journal migration number (as ``replicator.keystore.schema``).

``api_token_generation`` is one counter bumped in the transaction of every create and revoke: a node
polls that one row and reloads the tokens only when it moved.
"""

from __future__ import annotations

VERSION_TABLE = "tokens_version"
COMPONENT = "tokens"

PG_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE api_tokens (
    token_id       text PRIMARY KEY,
    principal      text NOT NULL,
    token_sha256   text NOT NULL UNIQUE,
    scopes         text NOT NULL,
    created_at     double precision NOT NULL,
    expires_at     double precision,
    revoked_at     double precision,
    client_subject text,
    client_san     text
);
CREATE TABLE api_token_generation (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    n   bigint NOT NULL
);
INSERT INTO api_token_generation (n) VALUES (0);
""",
    ),
]

SQLITE_MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE api_tokens (
    token_id       TEXT PRIMARY KEY,
    principal      TEXT NOT NULL,
    token_sha256   TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,
    created_at     REAL NOT NULL,
    expires_at     REAL,
    revoked_at     REAL,
    client_subject TEXT,
    client_san     TEXT
);
CREATE TABLE api_token_generation (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    n   INTEGER NOT NULL
);
INSERT INTO api_token_generation (one, n) VALUES (1, 0);
""",
    ),
]
