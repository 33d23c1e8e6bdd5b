"""Service tokens: making one, and the hash the policy file stores.

A token is 32 random bytes (URL-safe base64 after a ``rpl_`` prefix), stored
as its SHA-256. A plain hash is the right tool here: with 256 bits of
entropy no guess can be tested faster than brute force of the token itself,
so a slow password hash would add only per-request cost.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

TOKEN_PREFIX = "rpl_"


def generate_token() -> tuple[str, str]:
    """A new service token and the hash to put in the policy file."""
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
