"""KEK rotation: rewrap under a new KEK, link the previous one, finish.

Rotation unwraps and rewraps every DEK and the index key under a new KEK
version in one state (one atomic write); objects are never re-encrypted
(they depend on the DEK, which does not change). So that processes still
running with the previous KEK keep working, the same state carries a
``Link``: the new KEK sealed under the previous one. A holder of the previous
KEK that finds the file rotated opens the link, checks the new KEK against
its check value and carries on with the new KEK (new DEKs are always wrapped
under the newest KEK); opening with the previous secret works the same way.
``finished`` removes the link and the previous version: from then the
previous KEK opens nothing. A second rotation before that is refused
(``RotationUnfinished``), so at most two KEKs ever open the file. A KEK
version is kept while a wrapped key or the link refers to it. Files without
a link (all files written before links existed) read as before.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from keys.keyring import kek as keks
from keys.keyring.state import KekVersion, KeyringState, Link, Wrapped
from keys.provider import (
    KEY_BYTES,
    KekSource,
    KeyringCorrupt,
    KeyringError,
    KeyringLocked,
    WrongPassphrase,
)


class RotationUnfinished(KeyringError):
    """``rotate_kek`` refused: the previous rotation's link is still in the
    file; call ``finish_rotation`` first."""


def refuse_if_unfinished(state: KeyringState, path: Path | str) -> None:
    if state.link is not None:
        raise RotationUnfinished(
            f"keyring {path} still links KEK version {state.link.old} to {state.link.new}: "
            "finish that rotation before starting another"
        )


def rotated(state: KeyringState, old: bytes, entry: KekVersion, new: bytes, path: Path | str) -> KeyringState:
    """``state`` (whose current KEK is ``old``) rewrapped under ``new`` of
    ``entry``, the next version, with a link from ``old``."""
    refuse_if_unfinished(state, path)
    was, version = state.kek_current, state.kek_current + 1
    index_key = keks.unwrap(old, was, state.index_key, keks.INDEX_KEY_AD, "index key", path)
    deks = {}
    for dek_id, item in state.deks.items():
        ad, name_ad = keks.dek_ad(dek_id), keks.name_key_ad(dek_id)
        key = keks.unwrap(old, was, item, ad, f"data key {dek_id}", path)
        name_key = None  # a DEK made before name keys has none yet
        if item.name_key is not None:
            name = keks.unwrap(old, was, Wrapped(was, item.name_key), name_ad, f"name key of {dek_id}", path)
            name_key = keks.seal(new, name, name_ad)
        deks[dek_id] = replace(item, kek=version, wrapped=keks.seal(new, key, ad), name_key=name_key)
    link = Link(was, version, keks.seal(old, new, keks.link_ad(was, version)), keks.now())
    return _without_unused_versions(
        replace(
            state,
            kek_current=version,
            kek_versions={**state.kek_versions, version: entry},
            link=link,
            index_key=Wrapped(version, keks.seal(new, index_key, keks.INDEX_KEY_AD)),
            deks=deks,
        )
    )


def finished(state: KeyringState) -> KeyringState:
    """``state`` without its link, and without the versions nothing needs any more."""
    return _without_unused_versions(replace(state, link=None))


def follow(state: KeyringState, kek: bytes, version: int) -> bytes | None:
    """The current KEK of ``state`` given ``kek`` of ``version``: ``kek`` itself,
    or the one the link seals under it; None if neither checks out."""
    current = state.kek_current
    if version != current:
        link = state.link
        if link is None or link.old != version:
            return None
        opened = keks.try_open(kek, link.wrapped, keks.link_ad(version, current))
        if opened is None or len(opened) != KEY_BYTES:
            return None
        kek = opened
    return kek if keks.checks(kek, current, state.current_version) else None


def unlock(path: Path | str, state: KeyringState, source: KekSource) -> tuple[bytes, int]:
    """(the current KEK, the version ``source`` unlocks): the current version,
    else the previous one through the link."""
    current = state.kek_current
    try:
        return keks.unlock(path, state.current_version, current, source), current
    except KeyringLocked as first:
        link = state.link
        if link is None:
            raise
        try:
            old = keks.unlock(path, state.kek_versions[link.old], link.old, source)
        except KeyringLocked as second:
            # "Wrong passphrase" says more than "not a key file" when the previous KEK was of the other kind.
            raise (
                second if isinstance(second, WrongPassphrase) and not isinstance(first, WrongPassphrase) else first
            ) from None
    kek = follow(state, old, link.old)
    if kek is None:
        raise KeyringCorrupt(f"keyring {path}: the link from KEK version {link.old} does not unwrap")
    return kek, link.old


def _without_unused_versions(state: KeyringState) -> KeyringState:
    used = state.used_kek_versions()
    return replace(state, kek_versions={v: e for v, e in state.kek_versions.items() if v in used})
