"""The keyring file's state as typed values (``codec`` reads and writes them).

A state is immutable: every change makes a new one (``dataclasses.replace``)
that the state file then writes whole. Wrapped keys stay the base64 text the
file holds (``kek.seal`` makes it, ``kek.unwrap`` opens it), so one damaged
key fails alone, when it is used, and the rest of the file still serves.

Invariants checked on construction (a state that breaks one is never made,
so never written): the current KEK version is held; a rotation link runs from
another held version to the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["KekKind", "KekVersion", "KeyringState", "Link", "ScryptSalt", "Tombstone", "Wrapped", "WrappedDek"]

from keys.provider import ScryptParams, Tombstone

KekKind = Literal["passphrase", "keyfile", "barbican"]
SERVICE_KINDS: frozenset[KekKind] = frozenset({"barbican"})  # KEKs held by a key service, named by ``ref``


@dataclass(frozen=True)
class ScryptSalt:
    """How a passphrase version derives its KEK: scrypt cost and salt."""

    params: ScryptParams
    salt: bytes


@dataclass(frozen=True)
class KekVersion:
    """One KEK version. ``check`` is a known constant sealed under it, so a
    wrong secret fails clearly instead of yielding garbage keys. A key-file
    version stores nothing about its key; a key-service version only where
    the key lives (``ref``, a public name such as a Barbican secret URL)."""

    kind: KekKind
    check: str
    created_at: datetime
    scrypt: ScryptSalt | None = None  # passphrase versions only
    ref: str | None = None  # key-service versions only

    def __post_init__(self) -> None:
        if (self.kind == "passphrase") != (self.scrypt is not None):
            raise ValueError("scrypt parameters go with a passphrase KEK, and only with one")
        if (self.kind in SERVICE_KINDS) != (self.ref is not None):
            raise ValueError("a secret reference goes with a key-service KEK, and only with one")


@dataclass(frozen=True)
class Wrapped:
    """A key sealed under KEK version ``kek`` (the index key)."""

    kek: int
    wrapped: str


@dataclass(frozen=True)
class WrappedDek:
    """A customer's data key sealed under KEK version ``kek``, with the name key of the same
    generation sealed under the same version (``keys.tags``; None for a DEK made before name
    keys existed, until its next write gives it one). Both leave the state together."""

    kek: int
    wrapped: str
    created_at: datetime
    name_key: str | None = None


@dataclass(frozen=True)
class Link:
    """An unfinished rotation: the KEK of ``new`` sealed under that of ``old``,
    so holders of the old KEK follow it to the new one."""

    old: int
    new: int
    wrapped: str
    created_at: datetime


@dataclass(frozen=True)
class KeyringState:
    """Everything the keyring file holds. Customers appear only by tag."""

    kek_current: int
    kek_versions: Mapping[int, KekVersion]
    index_key: Wrapped
    deks: Mapping[str, WrappedDek]  # DEK id -> wrapped key
    customers: Mapping[str, str]  # customer tag -> current DEK id
    destroyed: Mapping[str, datetime]  # DEK id -> destruction time (dead for ever)
    erased: Mapping[str, Tombstone]  # customer tag -> tombstone
    link: Link | None = None  # absent unless a rotation awaits finishing

    def __post_init__(self) -> None:
        if self.kek_current not in self.kek_versions:
            raise ValueError("the current KEK version is missing")
        link = self.link
        if link is not None and not (
            link.new == self.kek_current and link.old != link.new and link.old in self.kek_versions
        ):
            raise ValueError("the rotation link must run from a held version to the current one")

    @property
    def current_version(self) -> KekVersion:
        return self.kek_versions[self.kek_current]

    def used_kek_versions(self) -> set[int]:
        """Versions some wrapped key or the link needs (the others can go)."""
        used = {self.kek_current, self.index_key.kek}
        if self.link is not None:
            used.add(self.link.old)
        used.update(item.kek for item in self.deks.values())
        return used
