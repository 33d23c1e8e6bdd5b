"""Signed erasure receipts: Ed25519 under a deployment signing key, checkable offline.

A receipt is a JSON object (what ``GET /v1/erasures/{id}`` and ``replicator
erase`` give). Signing adds one field, ``signature``::

    "signature": {"alg": "Ed25519", "key_id": "rk_<16 hex>", "value": "<base64url, no padding>"}

The signed bytes are ``CONTEXT`` followed by the **canonical encoding** of
every other field: JSON with keys sorted at every level, no whitespace
(``,`` and ``:``), ASCII only (``\\uXXXX`` escapes), integers and strings
only (no floats, so no number formatting to agree on). Any change of a field,
an added or a removed field, breaks the signature; the context keeps a
receipt signature from ever standing for another kind of message.

``key_id`` is ``rk_`` and the first 16 hex digits of SHA-256 over the raw
32-byte public key: it names the key so a verifier given the wrong public
key is told so, and is never trusted alone (the signature is checked under
the public key the verifier brings, not one the receipt names).

The signing key is a PKCS#8 PEM file (``openssl genpkey -algorithm ed25519``
writes one; so does :func:`generate`), named by path in the config, readable
by its owner only (mode 0600; group read only for a group of this process,
as a Kubernetes secret volume under the pod's ``fsGroup`` gives: anything
else is refused). Its public half is
a SubjectPublicKeyInfo PEM (``openssl pkey -pubout``), which is what auditors
get. The private key lives in memory only; its ``repr`` hides it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CONTEXT = b"replicator erasure receipt v1\n"
ALG = "Ed25519"
SIGNATURE_BYTES = 64


class ReceiptKeyError(Exception):
    """A signing or public key that cannot be used; the message names the file, never the key."""


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes a receipt's signature covers: ``CONTEXT`` + sorted, compact, ASCII JSON of ``fields``."""
    _no_floats(fields)
    return CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _no_floats(value: object) -> None:
    if isinstance(value, float):
        raise ValueError("a signed receipt holds integers and strings only, not floats")
    if isinstance(value, dict):
        for item in value.values():
            _no_floats(item)
    elif isinstance(value, list):
        for item in value:
            _no_floats(item)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "rk_" + hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class SigningKey:
    """The deployment's receipt signing key (Ed25519), in memory only."""

    __slots__ = ("_key", "key_id", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a PKCS#8 PEM Ed25519 private key; refuse a file others may read (mode wider than 0600)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ReceiptKeyError(f"cannot read receipt signing key {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not _private(st):
                raise ReceiptKeyError(
                    f"receipt signing key {path} has mode {stat.S_IMODE(st.st_mode):04o}: make it readable by "
                    "its owner only (chmod 600)"
                )
            data = f.read()
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ReceiptKeyError(f"receipt signing key {path} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ReceiptKeyError(f"receipt signing key {path} is not an Ed25519 key")
        return cls(key)

    def sign(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with a ``signature`` over their canonical encoding (``fields`` must not hold one)."""
        if "signature" in fields:
            raise ValueError("the receipt is signed already")
        value = self._key.sign(canonical(fields))
        encoded = base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
        return {**fields, "signature": {"alg": ALG, "key_id": self.key_id, "value": encoded}}

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, key=<redacted>)"


def _private(st: os.stat_result) -> bool:
    """Owner only; group read is allowed only for a group this process is in (a Kubernetes secret
    volume is 0440 under the pod's own fsGroup). Nobody else may read, no group may write."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o027:
        return False
    return not mode & 0o040 or st.st_gid in {os.getegid(), *os.getgroups()}


def check_key_file(path: str | os.PathLike[str]) -> None:
    """Raise ``ReceiptKeyError`` unless ``path`` holds a usable signing key (for a config check at load)."""
    SigningKey.load(path)


def generate(path: str | os.PathLike[str]) -> SigningKey:
    """Make a new signing key at ``path`` (PKCS#8 PEM, mode 0600, fails if it exists) and its public
    key beside it at ``<path>.pub``; return it."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    signing = SigningKey(key)
    Path(f"{os.fspath(path)}.pub").write_bytes(public_pem(signing.public))
    return signing


def load_public(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A SubjectPublicKeyInfo PEM Ed25519 public key (or the public half of a private key file)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ReceiptKeyError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key: object = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise ReceiptKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptKeyError(f"{path} is not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Checked:
    ok: bool
    reason: str  # "ok", or what is wrong
    key_id: str | None = None  # the key the receipt names


def verify(receipt: object, public: Ed25519PublicKey) -> Checked:
    """Check a receipt's signature under ``public``; say why it fails (unsigned, another key, changed)."""
    if not isinstance(receipt, dict):
        return Checked(False, "the receipt is not a JSON object")
    sig = receipt.get("signature")
    if sig is None:
        return Checked(False, "the receipt is not signed (no signature field)")
    if not isinstance(sig, dict) or set(sig) != {"alg", "key_id", "value"}:
        return Checked(False, "the signature field is not {alg, key_id, value}")
    named = sig["key_id"] if isinstance(sig["key_id"], str) else None
    if sig["alg"] != ALG:
        return Checked(False, f"the signature algorithm is {sig['alg']!r}, not {ALG}", named)
    expected = key_id(public)
    if named != expected:
        return Checked(False, f"signed by key {named}, not by the public key given ({expected})", named)
    try:
        value = sig["value"]
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        return Checked(False, "the signature is not base64url", named)
    if len(raw) != SIGNATURE_BYTES:
        return Checked(False, f"the signature is {len(raw)} bytes, not {SIGNATURE_BYTES} (truncated?)", named)
    fields = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        public.verify(raw, canonical(fields))
    except (InvalidSignature, ValueError):
        return Checked(False, "the signature does not match the receipt's fields (a field was changed)", named)
    return Checked(True, "ok", named)
