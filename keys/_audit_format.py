"""The audit record format and its chain link, keyed or not (``keys.audit`` has the rules).

A record is one line of JSON, its fields in a fixed order ending in ``prev``,
then the link that chains it:

* ``"hash"`` (format 1, unkeyed, the logs written before the audit key):
  SHA-256 of the record's bytes up to ``prev`` (the line without its
  ``,"hash":"…"`` suffix, ``}`` put back). Anyone who edits a record can
  recompute it, and every hash after it: it shows accidents, not an attacker.
* ``"mac"`` (format 2, keyed): HMAC-SHA256 of the same bytes under the
  deployment's **audit key**. ``prev`` is the previous record's link, so a
  chain is keyed from its first keyed record on, and that record's MAC also
  covers the last unkeyed hash: the unkeyed part before it is anchored too.
  Without the key no one can make a record that verifies.

The audit key is derived from the index key by HKDF-SHA256 (``AuditKey.derive``,
its own ``info`` label), so every key provider serves it with no new secret
to store: it is kept wrapped under the KEK exactly as the index key is, is the
same on every node of a deployment and survives a KEK rotation. It lives in
memory only; its ``repr`` hides it and ``key_id`` (a public fingerprint)
names it in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

GENESIS = "0" * 64
MAX_LINE = 4096  # a valid record is well under 1 KiB
FIELDS = ("seq", "time", "principal", "action", "customer_tag", "class", "name_tag", "purpose", "outcome", "prev")
_LINK_SUFFIX = re.compile(rb',"(hash|mac)":"([0-9a-f]{64})"\}\Z')
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AUDIT_INFO = b"replicator audit chain key v1"


class AuditKey:
    """The key that links a keyed chain: 32 bytes, never shown."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != 32:
            raise ValueError("audit key must be 32 bytes")
        self._key = key

    @classmethod
    def derive(cls, index_key: bytes) -> AuditKey:
        """The audit key of the deployment whose index key is ``index_key`` (HKDF-SHA256, own label)."""
        return cls(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_AUDIT_INFO).derive(index_key))

    def mac(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key without revealing it."""
        return "ak_" + self.mac(b"audit key id")[:16]

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r}, key=<redacted>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuditKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.key_id)


@dataclass(frozen=True)
class Decoded:
    fields: dict[str, Any]
    link: str  # the record's hash or MAC: the next record's prev
    keyed: bool  # a MAC (format 2), not a bare hash
    checked: bool  # the link was checked (False: a MAC read without the key)


def encode(fields: dict[str, Any], key: AuditKey | None) -> tuple[bytes, str]:
    """(line with newline, its link) for the record ``fields`` (up to prev): keyed if ``key``."""
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if key is None:
        name, link = b"hash", hashlib.sha256(body).hexdigest()
    else:
        name, link = b"mac", key.mac(body)
    return body[:-1] + b',"' + name + b'":"' + link.encode("ascii") + b'"}\n', link


def decode(line: bytes, key: AuditKey | None) -> Decoded:
    """Parse one line (without newline), checking its link (a MAC only with ``key``); raise
    ValueError saying what is wrong."""
    m = _LINK_SUFFIX.search(line)
    if m is None:
        raise ValueError("record has no hash or mac")
    body = line[: m.start()] + b"}"
    keyed, link = m.group(1) == b"mac", m.group(2).decode()
    if not keyed and hashlib.sha256(body).hexdigest() != link:
        raise ValueError("record hash does not match its contents (record edited)")
    if keyed and key is not None and not hmac.compare_digest(key.mac(body), link):
        raise ValueError(
            f"record mac does not match under audit key {key.key_id} (record edited, or re-chained without the key)"
        )
    try:
        fields = json.loads(body)
    except ValueError:
        raise ValueError("record is not valid JSON") from None
    if not isinstance(fields, dict) or tuple(fields) != FIELDS:
        raise ValueError("record does not have the audit fields in order")
    if not isinstance(fields["seq"], int) or not _HEX64.fullmatch(str(fields["prev"])):
        raise ValueError("record has a bad seq or prev")
    return Decoded(fields, link, keyed, not keyed or key is not None)
