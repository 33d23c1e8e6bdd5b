"""keys: envelope encryption, key providers, name tags, policy, audit log.

A pure library: no region I/O, no HTTP, nothing of ``regions`` or
``replicator``. Public names are re-exported here.
"""

from keys.audit import (
    GENESIS,
    RETENTION_MONTHS,
    AuditCorrupt,
    AuditLog,
    AuditUnavailable,
    Checkpoint,
    VerifyResult,
    verify,
)
from keys.keyring import KeyringExists, LocalKeyring
from keys.policy import (
    ALLOWED_COUNTRIES,
    UNTIL_ERASURE,
    Verb,
    DataClass,
    Decision,
    Policy,
    PolicyError,
    Principal,
    RegionRule,
    check_region_rule,
    check_scope,
    generate_token,
    load_policy,
    parse_policy,
    token_hash,
)
from keys.provider import (
    DataKey,
    KekSource,
    KeyDestroyed,
    KeyFile,
    KeyProvider,
    KeyringCorrupt,
    KeyringError,
    KeyringLocked,
    Passphrase,
    ScryptParams,
    UnknownKey,
    WrongPassphrase,
)
from keys.sin import SinScanner, contains_sin, luhn_valid
from keys.tags import SealedNameInvalid, Tagger, is_tag, name_ad, open_name, seal_name

from keys.stream import (
    SEGMENT_SIZE,
    DecryptionFailed,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    object_ad,
)
# ---------------------------------------------------------------------------

__all__ = [
    # audit
    "GENESIS",
    "RETENTION_MONTHS",
    "AuditCorrupt",
    "AuditLog",
    "AuditUnavailable",
    "Checkpoint",
    "VerifyResult",
    "verify",
    # keyring / provider
    "LocalKeyring",
    "KeyringExists",
    "DataKey",
    "KekSource",
    "KeyDestroyed",
    "KeyFile",
    "KeyProvider",
    "KeyringCorrupt",
    "KeyringError",
    "KeyringLocked",
    "Passphrase",
    "ScryptParams",
    "UnknownKey",
    "WrongPassphrase",
    # policy
    "ALLOWED_COUNTRIES",
    "UNTIL_ERASURE",
    "Verb",
    "DataClass",
    "Decision",
    "Policy",
    "PolicyError",
    "Principal",
    "RegionRule",
    "check_region_rule",
    "check_scope",
    "generate_token",
    "load_policy",
    "parse_policy",
    "token_hash",
    # sin
    "SinScanner",
    "contains_sin",
    "luhn_valid",
    # tags
    "SealedNameInvalid",
    "Tagger",
    "is_tag",
    "name_ad",
    "open_name",
    "seal_name",
    "SEGMENT_SIZE",
    "DecryptionFailed",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "object_ad",
]
