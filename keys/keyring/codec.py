"""The one encoding of a ``KeyringState``: the ``replicator-keyring/1`` JSON file.

``decode(encode(s)) == s``, and ``encode(decode(b)) == b`` for every file this
code wrote (``json.dumps`` with one-space indent and sorted keys, then a
newline): the format is pinned by ``tests/unit/keys/golden/``. Layout::

    {"format": "replicator-keyring/1",
     "kek": {"current": 2,
             "versions": {"2": {"kind": "passphrase" | "keyfile" | "barbican", "check": B64,
                                "created_at": ISO, "scrypt": {"n", "r", "p", "salt": B64},
                                "ref": URL}},
             "link": {"from": 1, "to": 2, "wrapped": B64, "created_at": ISO}},   # optional
     "index_key": {"kek": 2, "wrapped": B64},
     "deks": {DEK_ID: {"kek": 2, "wrapped": B64, "created_at": ISO, "name_key": B64}},
     "customers": {CUSTOMER_TAG: DEK_ID},
     "destroyed": {DEK_ID: ISO},
     "erased": {CUSTOMER_TAG: {"destroyed_at": ISO, "dek_id": DEK_ID | null}}}

``name_key`` (the generation's name key, wrapped like its DEK) is absent from
DEKs made before name keys existed. ``scrypt`` is present for passphrase versions only, ``ref`` (where a key
service keeps the KEK: a Barbican secret's URL, nothing secret) for
``barbican`` versions only. ``decode`` raises
``ValueError`` for anything else (unknown or missing fields, wrong types).
Wrapped values (B64) stay text: ``keys.keyring.kek`` opens them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

from keys.keyring.state import (
    KekKind,
    KekVersion,
    KeyringState,
    Link,
    ScryptSalt,
    Tombstone,
    Wrapped,
    WrappedDek,
)
from keys.provider import ScryptParams

FORMAT = "replicator-keyring/1"

_T = TypeVar("_T")
_Json = dict[str, object]


# ----- encode -----------------------------------------------------------------


def encode(state: KeyringState) -> bytes:
    kek: _Json = {
        "current": state.kek_current,
        "versions": {str(v): _kek_version(e) for v, e in state.kek_versions.items()},
    }
    if state.link is not None:
        kek["link"] = _link(state.link)
    doc: _Json = {
        "format": FORMAT,
        "kek": kek,
        "index_key": {"kek": state.index_key.kek, "wrapped": state.index_key.wrapped},
        "deks": {d: _dek(w) for d, w in state.deks.items()},
        "customers": dict(state.customers),
        "destroyed": {d: t.isoformat() for d, t in state.destroyed.items()},
        "erased": {
            c: {"destroyed_at": t.destroyed_at.isoformat(), "dek_id": t.dek_id} for c, t in state.erased.items()
        },
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def _dek(item: WrappedDek) -> _Json:
    out: _Json = {"kek": item.kek, "wrapped": item.wrapped, "created_at": item.created_at.isoformat()}
    if item.name_key is not None:
        out["name_key"] = item.name_key
    return out


def _link(link: Link) -> _Json:
    return {"from": link.old, "to": link.new, "wrapped": link.wrapped, "created_at": link.created_at.isoformat()}


def _kek_version(entry: KekVersion) -> _Json:
    out: _Json = {"kind": entry.kind, "check": entry.check, "created_at": entry.created_at.isoformat()}
    if entry.scrypt is not None:
        p = entry.scrypt.params
        out["scrypt"] = {"n": p.n, "r": p.r, "p": p.p, "salt": base64.b64encode(entry.scrypt.salt).decode("ascii")}
    if entry.ref is not None:
        out["ref"] = entry.ref
    return out


# ----- decode -----------------------------------------------------------------


def decode(raw: bytes) -> KeyringState:
    """The state in ``raw``; ``ValueError`` if it is not a keyring file."""
    try:
        doc = _obj(json.loads(raw), {"format", "kek", "index_key", "deks", "customers", "destroyed", "erased"})
        if doc["format"] != FORMAT:
            raise ValueError("not a keyring file of this format")
        kek = _obj(doc["kek"], {"current", "versions"}, {"link"})
        link = kek.get("link")
        return KeyringState(
            kek_current=_int(kek["current"]),
            kek_versions={_version_key(v): _decode_kek_version(e) for v, e in _map(kek["versions"]).items()},
            link=None if link is None else _decode_link(link),
            index_key=_decode_wrapped(doc["index_key"]),
            deks=_mapping(doc["deks"], _decode_dek),
            customers=_mapping(doc["customers"], _str),
            destroyed=_mapping(doc["destroyed"], _time),
            erased=_mapping(doc["erased"], _decode_tombstone),
        )
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed keyring: {exc!r}") from None


def _decode_kek_version(value: object) -> KekVersion:
    entry = _obj(value, {"kind", "check", "created_at"}, {"scrypt", "ref"})
    kind: KekKind
    if entry["kind"] == "passphrase":
        kind = "passphrase"
    elif entry["kind"] == "keyfile":
        kind = "keyfile"
    elif entry["kind"] == "barbican":
        kind = "barbican"
    else:
        raise ValueError("unknown KEK kind")
    scrypt = None
    if "scrypt" in entry:
        s = _obj(entry["scrypt"], {"n", "r", "p", "salt"})
        params = ScryptParams(n=_int(s["n"]), r=_int(s["r"]), p=_int(s["p"]))
        params.check()  # bounds stop a damaged file from asking for gigabytes
        scrypt = ScryptSalt(params, base64.b64decode(_str(s["salt"]), validate=True))
    ref = None if "ref" not in entry else _str(entry["ref"])
    return KekVersion(kind, _str(entry["check"]), _time(entry["created_at"]), scrypt, ref)


def _decode_link(value: object) -> Link:
    link = _obj(value, {"from", "to", "wrapped", "created_at"})
    return Link(_int(link["from"]), _int(link["to"]), _str(link["wrapped"]), _time(link["created_at"]))


def _decode_wrapped(value: object) -> Wrapped:
    item = _obj(value, {"kek", "wrapped"})
    return Wrapped(_int(item["kek"]), _str(item["wrapped"]))


def _decode_dek(value: object) -> WrappedDek:
    item = _obj(value, {"kek", "wrapped", "created_at"}, {"name_key"})
    name_key = None if "name_key" not in item else _str(item["name_key"])
    return WrappedDek(_int(item["kek"]), _str(item["wrapped"]), _time(item["created_at"]), name_key)


def _decode_tombstone(value: object) -> Tombstone:
    item = _obj(value, {"destroyed_at", "dek_id"})
    dek_id = item["dek_id"]
    return Tombstone(_time(item["destroyed_at"]), None if dek_id is None else _str(dek_id))


# ----- pieces, for a store that keeps the state in rows (replicator.keystore) -----------


def encode_piece(value: KekVersion | Link | Wrapped) -> str:
    """One KEK version, rotation link or wrapped index key as the JSON the file holds for it."""
    if isinstance(value, KekVersion):
        doc = _kek_version(value)
    elif isinstance(value, Link):
        doc = _link(value)
    else:
        doc = {"kek": value.kek, "wrapped": value.wrapped}
    return json.dumps(doc, sort_keys=True)


def decode_kek_version(text: str) -> KekVersion:
    return _piece(text, _decode_kek_version)


def decode_link(text: str) -> Link:
    return _piece(text, _decode_link)


def decode_wrapped(text: str) -> Wrapped:
    return _piece(text, _decode_wrapped)


def _piece(text: str, decode: Callable[[object], _T]) -> _T:
    try:
        return decode(json.loads(text))
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed keyring record: {exc!r}") from None


# ----- typed readers of parsed JSON -------------------------------------------


def _obj(value: object, required: set[str], optional: frozenset[str] | set[str] = frozenset()) -> _Json:
    """A JSON object with exactly the ``required`` fields and some ``optional`` ones."""
    doc = _map(value)
    if not required <= set(doc) <= required | optional:
        raise ValueError(f"fields {sorted(doc)} are not {sorted(required)} (+ {sorted(optional)})")
    return doc


def _map(value: object) -> _Json:
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object")
    return value


def _mapping(value: object, item: Callable[[object], _T]) -> Mapping[str, _T]:
    return {k: item(v) for k, v in _map(value).items()}


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _version_key(text: str) -> int:
    version = int(text)
    if str(version) != text:  # so that re-encoding gives the same key back
        raise ValueError("KEK versions are keyed by their decimal number")
    return version


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _time(value: object) -> datetime:
    when = datetime.fromisoformat(_str(value))
    if when.tzinfo is None:
        raise ValueError("times carry their UTC offset")
    return when
