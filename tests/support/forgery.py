"""What an attacker holding an audit log file does: re-link it under a guessed key (or none)."""

from __future__ import annotations

import hashlib
import hmac
import json

GUESSED_KEY = b"\x00" * 32  # an audit key an attacker might try


def rechain(lines: list[bytes], start: int, key: bytes | None = GUESSED_KEY) -> list[bytes]:
    """``lines`` with every link from ``start`` (0-based) rewritten: HMAC-SHA256 under ``key`` as keyed
    records are, or plain SHA-256 as unkeyed records were (``key`` None)."""
    out = list(lines[:start])
    prev = json.loads(lines[start - 1])["mac" if b'"mac"' in lines[start - 1] else "hash"] if start else "0" * 64
    for line in lines[start:]:
        fields = json.loads(line)
        fields.pop("mac", None), fields.pop("hash", None)
        fields["prev"] = prev
        body = json.dumps(fields, separators=(",", ":")).encode()
        if key is not None:
            name, prev = "mac", hmac.new(key, body, hashlib.sha256).hexdigest()
        else:
            name, prev = "hash", hashlib.sha256(body).hexdigest()
        out.append(body[:-1] + f',"{name}":"{prev}"}}\n'.encode())
    return out
