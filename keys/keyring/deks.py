"""DEK lifecycle as state transitions: create, destroy, reinstate.

A DEK's name key lives in its record (``WrappedDek.name_key``), so every
transition here takes it along with the DEK.

Pure functions from one ``KeyringState`` to the next; the keyring handle
writes the result. A destroyed DEK id stays destroyed for ever (its wrapped
key leaves the file, its id and time stay in ``destroyed``); an erased
customer keeps a tombstone until ``reinstate``, after which the next write
makes a new generation (a new id).
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import replace
from datetime import datetime

from keys.keyring.state import KeyringState, Tombstone, WrappedDek
from keys.provider import UnknownKey

_DEK_ID = re.compile(r"dek_[a-z2-7]{26}")


def new_id() -> str:
    return "dek_" + base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=").lower()


def check_id(dek_id: object) -> None:
    """Refuse an id this keyring cannot have made (so it never reaches a message or a lookup)."""
    if not isinstance(dek_id, str) or not _DEK_ID.fullmatch(dek_id):
        raise UnknownKey("malformed data key id")


def created(state: KeyringState, ctag: str, dek_id: str, item: WrappedDek) -> KeyringState:
    """``dek_id`` becomes the current DEK of the customer tagged ``ctag``."""
    return replace(state, deks={**state.deks, dek_id: item}, customers={**state.customers, ctag: dek_id})


def named(state: KeyringState, dek_id: str, wrapped_name_key: str) -> KeyringState:
    """``dek_id`` (made before name keys existed) gets its name key, wrapped like the DEK."""
    item = replace(state.deks[dek_id], name_key=wrapped_name_key)
    return replace(state, deks={**state.deks, dek_id: item})


def destroyed(state: KeyringState, ctag: str, when: datetime) -> KeyringState:
    """The customer's current DEK (if any) leaves the file; a tombstone blocks new ones."""
    customers = dict(state.customers)
    dek_id = customers.pop(ctag, None)
    deks, dead = dict(state.deks), dict(state.destroyed)
    if dek_id is not None:
        deks.pop(dek_id, None)
        dead[dek_id] = when
    erased = {**state.erased, ctag: Tombstone(when, dek_id)}
    return replace(state, deks=deks, customers=customers, destroyed=dead, erased=erased)


def reinstated(state: KeyringState, ctag: str) -> KeyringState:
    """The tombstone goes; old DEK ids stay destroyed."""
    return replace(state, erased={c: t for c, t in state.erased.items() if c != ctag})


def reapplied(state: KeyringState, ctag: str, tomb: Tombstone, still_erased: bool) -> KeyringState | None:
    """``state`` with an erasure from the ledger re-applied: ``tomb``'s DEK destroyed and, if
    ``still_erased``, the customer erased again; None if it already was (nothing to write)."""
    new = state
    dek_id = tomb.dek_id
    if dek_id is not None and dek_id not in state.destroyed:
        new = replace(
            new,
            deks={d: w for d, w in state.deks.items() if d != dek_id},
            customers={c: d for c, d in state.customers.items() if d != dek_id},
            destroyed={**state.destroyed, dek_id: tomb.destroyed_at},
        )
    if still_erased and ctag not in new.erased:
        new = destroyed(new, ctag, tomb.destroyed_at)
    return None if new is state else new
