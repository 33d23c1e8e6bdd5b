"""KEK sources and key wrapping: from a passphrase, a key file or a key
service (Barbican) to a KEK, and keys sealed under it.

Everything in the file is sealed with AES-256-GCM under a KEK (random 12-byte
nonce, stored base64 as nonce ‖ ciphertext). The associated data names what
is sealed, so a sealed value moved elsewhere in the file does not open: the
DEK id for a DEK, a fixed label for the index key, the version for a KEK's
check value, both versions for a rotation link.
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keys.keyring.state import SERVICE_KINDS, KekKind, KekVersion, ScryptSalt, Wrapped, WrappedDek
from keys.provider import (
    KEY_BYTES,
    KekSource,
    KeyFile,
    KeyringCorrupt,
    KeyringLocked,
    Passphrase,
    ScryptParams,
    ServiceKek,
    WrongPassphrase,
)

CHECK_PLAINTEXT = b"replicator keyring KEK check v1"
INDEX_KEY_AD = b"replicator/keyring/index-key"
_NONCE = 12
_TAG = 16


def check_ad(version: int) -> bytes:
    return f"replicator/keyring/kek-check/{version}".encode("ascii")


def link_ad(old: int, new: int) -> bytes:
    return f"replicator/keyring/kek-link/{old}->{new}".encode("ascii")


def dek_ad(dek_id: str) -> bytes:
    return dek_id.encode("ascii")


def name_key_ad(dek_id: str) -> bytes:
    """Binds a wrapped name key to its DEK generation, apart from the DEK (``dek_ad``)."""
    return b"replicator/keyring/name-key/" + dek_id.encode("ascii")


def now() -> datetime:
    return datetime.now(UTC)


def seal(kek: bytes, secret: bytes, ad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, secret, ad)).decode("ascii")


def try_open(kek: bytes, sealed: str, ad: bytes) -> bytes | None:
    """What ``seal`` sealed, or None if it does not open (wrong KEK, moved, damaged)."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        if len(raw) < _NONCE + _TAG:
            return None
        return AESGCM(kek).decrypt(raw[:_NONCE], raw[_NONCE:], ad)
    except (InvalidTag, ValueError, binascii.Error):
        return None


def unwrap(kek: bytes, version: int, item: Wrapped | WrappedDek, ad: bytes, what: str, path: Path | str) -> bytes:
    """The 32-byte key in ``item``, which must be wrapped by ``kek`` (of ``version``)."""
    if item.kek != version:
        raise KeyringCorrupt(f"{what} in keyring {path} is wrapped by a KEK version it does not hold")
    key = try_open(kek, item.wrapped, ad)
    if key is None or len(key) != KEY_BYTES:
        raise KeyringCorrupt(f"{what} in keyring {path} does not unwrap (file damaged or edited)")
    return key


def checks(kek: bytes, version: int, entry: KekVersion) -> bool:
    """Whether ``kek`` is the KEK of ``entry`` (its check value opens)."""
    return try_open(kek, entry.check, check_ad(version)) == CHECK_PLAINTEXT


def _derive(secret: str, params: ScryptParams, salt: bytes) -> bytes:
    # NFC so the same passphrase typed on two systems derives the same KEK.
    data = unicodedata.normalize("NFC", secret).encode("utf-8")
    return Scrypt(salt=salt, length=KEY_BYTES, n=params.n, r=params.r, p=params.p).derive(data)


_NAMED: dict[KekKind, str] = {"passphrase": "a passphrase", "keyfile": "a key file", "barbican": "a Barbican secret"}


def kind_of(source: KekSource) -> KekKind:
    """The kind the keyring records for a KEK from ``source``."""
    if isinstance(source, Passphrase):
        return "passphrase"
    if isinstance(source, KeyFile):
        return "keyfile"
    if isinstance(source, ServiceKek):
        for kind in SERVICE_KINDS:
            if source.kind == kind:
                return kind
        raise TypeError(f"unknown key-service KEK kind {source.kind!r}")
    raise TypeError("KEK source must be a Passphrase, a KeyFile or a ServiceKek")


def new_version(source: KekSource, version: int) -> tuple[KekVersion, bytes]:
    """A new KEK version entry for ``source`` and the KEK itself."""
    kind = kind_of(source)
    if isinstance(source, Passphrase):
        scrypt = ScryptSalt(source.params, os.urandom(16))
        kek = _derive(source.secret, scrypt.params, scrypt.salt)
        return KekVersion(kind, seal(kek, CHECK_PLAINTEXT, check_ad(version)), now(), scrypt), kek
    if isinstance(source, KeyFile):
        kek = source.read()
        return KekVersion(kind, seal(kek, CHECK_PLAINTEXT, check_ad(version)), now()), kek
    kek = source.fetch()  # only the reference is recorded, never the key
    return KekVersion(kind, seal(kek, CHECK_PLAINTEXT, check_ad(version)), now(), ref=source.ref), kek


def unlock(path: Path | str, entry: KekVersion, version: int, source: KekSource) -> bytes:
    """The KEK of ``entry`` from ``source``; ``KeyringLocked`` (``WrongPassphrase``) if it is not.
    A key service that cannot be asked raises ``KeyServiceError``."""
    kind = kind_of(source)
    if entry.kind != kind:
        raise KeyringLocked(f"keyring {path} is locked with {_NAMED[entry.kind]}, not {_NAMED[kind]}")
    if isinstance(source, Passphrase):
        assert entry.scrypt is not None  # KekVersion's invariant
        kek = _derive(source.secret, entry.scrypt.params, entry.scrypt.salt)
        wrong = f"wrong passphrase for keyring {path}"
    elif isinstance(source, KeyFile):
        kek = source.read()
        wrong = f"wrong key file for keyring {path}"
    else:
        kek = source.fetch()
        wrong = f"wrong KEK for keyring {path}: Barbican secret {source.ref} does not unlock it" + (
            f" (KEK version {version} is Barbican secret {entry.ref})" if entry.ref != source.ref else ""
        )
    if not checks(kek, version, entry):
        raise WrongPassphrase(wrong)
    return kek
