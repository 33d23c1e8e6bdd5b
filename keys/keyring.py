"""The local keyring: the embedded ``KeyProvider``, one JSON file.

Theory of operation
-------------------
The file holds, all wrapped by the current KEK with AES-256-GCM (random
12-byte nonce; associated data = the DEK id for a DEK, a fixed label for the
index key):

* ``kek``: the KEK versions. A passphrase version stores its scrypt cost and
  salt; a key-file version stores nothing about the key. Each stores a
  *check*: a known constant sealed under that KEK, so a wrong passphrase or
  key file fails with ``WrongPassphrase`` instead of yielding garbage keys.
* ``index_key``: the deployment key of the name tags (``keys.tags``).
* ``deks``: DEK id -> wrapped key, KEK version, creation time.
* ``customers``: **customer tag** -> current DEK id. The file is keyed by the
  tag, not the customer id: the tag already names the customer's objects in
  both clouds, so the file adds no new identifier, and a copy of the file
  without the KEK does not list who the customers are.
* ``destroyed``: DEK id -> destruction time (ids stay dead for ever).
* ``erased``: customer tag -> tombstone ``{destroyed_at, dek_id}``.

Writes replace the whole file atomically: a temp file in the same directory
(mode 0600), fsync, rename over the old file, fsync the directory. A reader
therefore sees the old file or the new one, never a mix. Threads of one
process serialise on a lock; processes sharing the file serialise mutations
on ``flock`` of ``<file>.lock`` and re-read the file before changing it, so
no process overwrites a key another one created. Every call stats the file
and reloads it if another process replaced it, so a destroy elsewhere takes
effect here at the next call.

Erasure (``destroy``) removes the wrapped DEK from the file and writes a
tombstone; unwrapped DEKs live only in an in-memory LRU (bounded, default
10,000) that drops the key at once. ``get_or_create_dek`` for an erased
customer raises ``KeyDestroyed``; ``reinstate`` lifts the tombstone and the
next write makes a new generation (new id). Limits worth knowing: Python
cannot wipe ``bytes`` from memory, and an old *backup of this file* still
holds the wrapped DEK. To make erasure reach keyring backups, rotate the KEK
(``rotate_kek``), finish the rotation (``finish_rotation``) and discard the
old passphrase or key file.

KEK rotation unwraps and rewraps every DEK and the index key under a new KEK
version in one atomic write; objects are never re-encrypted (they depend on
the DEK, which does not change). So that processes still running with the
previous KEK keep working (no outage between the rotation and their
restart), the same write adds a **link**: ``kek.link = {from, to,
wrapped}``, the new KEK sealed under the previous one with AD naming both
versions. A handle holding the previous KEK that finds the file rotated
opens the link, checks the new KEK against its check value and carries on
with the new KEK in memory (new DEKs are always wrapped under the newest
KEK); ``open`` with the previous secret works the same way. Until the link
is removed, therefore, the previous passphrase or key file still opens the
keyring. ``finish_rotation`` removes the link and the previous version's
entry once every process runs on the new KEK; from then the previous KEK
opens nothing (``WrongPassphrase``). A second rotation before that is
refused (``RotationUnfinished``): at most two KEKs ever open the file. A
KEK version is kept while a wrapped key or the link refers to it. Files
without a link (all files written before links existed) read as before.

The calls are synchronous (see ``keys.provider``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import fcntl
import json
import os
import re
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keys.provider import (
    KEY_BYTES,
    DataKey,
    KekSource,
    KeyDestroyed,
    KeyFile,
    KeyringCorrupt,
    KeyringError,
    KeyringLocked,
    Passphrase,
    ScryptParams,
    UnknownKey,
    WrongPassphrase,
)
from keys.tags import Tagger

FORMAT = "replicator-keyring/1"
DEFAULT_CACHE_SIZE = 10_000
_CHECK_PLAINTEXT = b"replicator keyring KEK check v1"
_INDEX_KEY_AD = b"replicator/keyring/index-key"
_DEK_ID = re.compile(r"dek_[a-z2-7]{26}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check_ad(version: int) -> bytes:
    return f"replicator/keyring/kek-check/{version}".encode("ascii")


def _seal(kek: bytes, secret: bytes, ad: bytes) -> str:
    nonce = os.urandom(12)
    return _b64(nonce + AESGCM(kek).encrypt(nonce, secret, ad))


def _open(kek: bytes, blob: str, ad: bytes) -> bytes:
    """Unwrap; raises InvalidTag, or ValueError for a malformed blob."""
    raw = _unb64(blob)
    if len(raw) < 12 + 16:
        raise ValueError("wrapped value too short")
    return AESGCM(kek).decrypt(raw[:12], raw[12:], ad)


def _link_ad(old: int, new: int) -> bytes:
    return f"replicator/keyring/kek-link/{old}->{new}".encode("ascii")


def _new_dek_id() -> str:
    return "dek_" + base64.b32encode(os.urandom(16)).decode("ascii").rstrip("=").lower()


class KeyringExists(KeyringError):
    """``create`` found a keyring file already there."""


class RotationUnfinished(KeyringError):
    """``rotate_kek`` refused: the previous rotation's link is still in the
    file; call ``finish_rotation`` first."""


class _FileLock:
    """flock on ``<keyring>.lock``: serialises writers across processes.
    (The keyring itself is replaced by rename, so it cannot carry the lock.)"""

    def __init__(self, path: Path) -> None:
        self._path = path

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    # A rename always brings a new inode, so this changes on every write.
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class LocalKeyring:
    """A ``KeyProvider`` backed by one local JSON file.

    Open with ``LocalKeyring.create(path, kek)`` (new file) or
    ``LocalKeyring.open(path, kek, create=False)``; ``kek`` is a
    ``Passphrase`` or a ``KeyFile``. Raises ``WrongPassphrase`` for the wrong
    secret, ``KeyringCorrupt`` for an unreadable file and ``KeyringError`` for
    a file group or others can access."""

    def __init__(self, path: Path, state: dict[str, Any], kek: bytes, cache_size: int,
                 unlocked_by: int | None = None) -> None:
        # Use create()/open(); this only wires up an unlocked state (``kek`` is the current KEK).
        self._path = path
        self._lock = threading.RLock()
        self._file_lock = _FileLock(path.with_name(path.name + ".lock"))
        self._state = state
        self._kek: bytes | None = kek
        self._version = int(state["kek"]["current"])
        self._unlocked_by = self._version if unlocked_by is None else unlocked_by
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._sig = _signature(os.stat(path))
        self._tagger = Tagger(self._unwrap(kek, state["index_key"], _INDEX_KEY_AD, "index key"))

    def __repr__(self) -> str:
        return f"LocalKeyring(path={str(self._path)!r}, kek_version={self._version}, keys=<redacted>)"

    # ----- opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], kek: KekSource, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> LocalKeyring:
        """Make a new keyring file (fails if one exists) with a fresh index key."""
        path = Path(path)
        entry, kek_bytes = _new_kek_version(kek, 1)
        state: dict[str, Any] = {
            "format": FORMAT,
            "kek": {"current": 1, "versions": {"1": entry}},
            "index_key": {"kek": 1, "wrapped": _seal(kek_bytes, os.urandom(KEY_BYTES), _INDEX_KEY_AD)},
            "deks": {},
            "customers": {},
            "destroyed": {},
            "erased": {},
        }
        with _FileLock(path.with_name(path.name + ".lock")).held():
            if path.exists():
                raise KeyringExists(f"keyring {path} already exists")
            _write_atomic(path, state)
        return cls(path, state, kek_bytes, cache_size)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        kek: KekSource,
        *,
        create: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> LocalKeyring:
        """Unlock an existing keyring (or make one if ``create`` and it is missing)."""
        path = Path(path)
        if create and not path.exists():
            with contextlib.suppress(KeyringExists):
                return cls.create(path, kek, cache_size=cache_size)
            # Lost a race with another creator: fall through and open theirs.
        state = _read_state(path)
        kek_bytes, unlocked_by = _unlock_state(path, state, kek)
        return cls(path, state, kek_bytes, cache_size, unlocked_by)

    @property
    def unfinished_rotation(self) -> tuple[int, int] | None:
        """(previous, current) KEK versions while a rotation's link awaits ``finish_rotation``."""
        link = self._state["kek"].get("link")
        return None if link is None else (int(link["from"]), int(link["to"]))

    @property
    def unlocked_by(self) -> int:
        """The KEK version the secret given to ``open`` unlocks: the current
        one, or the previous one through a rotation link not yet finished."""
        return self._unlocked_by

    def close(self) -> None:
        """Forget the KEK and every cached key; later calls raise ``KeyringLocked``."""
        with self._lock:
            self._kek = None
            self._cache.clear()

    def __enter__(self) -> LocalKeyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- KeyProvider --------------------------------------------------------

    def tagger(self) -> Tagger:
        return self._tagger

    def get_or_create_dek(self, customer: str) -> DataKey:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            kek = self._fresh()
            found = self._current(ctag, kek)
            if found is not None:
                return found
            with self._file_lock.held():
                kek = self._fresh()
                found = self._current(ctag, kek)  # another process may have made it
                if found is not None:
                    return found
                dek_id, key = _new_dek_id(), os.urandom(KEY_BYTES)
                state = copy.deepcopy(self._state)
                state["deks"][dek_id] = {
                    "kek": self._version,
                    "wrapped": _seal(kek, key, dek_id.encode("ascii")),
                    "created_at": _now(),
                }
                state["customers"][ctag] = dek_id
                self._commit(state)
            self._remember(dek_id, key)
            return DataKey(dek_id, key)

    def get_dek(self, dek_id: str) -> bytes:
        _check_dek_id(dek_id)
        with self._lock:
            kek = self._fresh()
            return self._key(dek_id, kek)

    def dek_at_hand(self, customer: str) -> DataKey | None:
        ctag = self._tagger.customer_tag(customer)
        return self._at_hand(lambda kek: self._current(ctag, kek))

    def key_at_hand(self, dek_id: str) -> bytes | None:
        _check_dek_id(dek_id)
        return self._at_hand(lambda kek: self._key(dek_id, kek))

    def _at_hand(self, look: Callable[[bytes], Any]) -> Any:
        """``look(kek)`` if that needs no I/O but a ``stat``: the file is unchanged since it was
        read and no other thread holds the keyring. None when it would have to wait."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._kek is None:
                raise KeyringLocked(f"keyring {self._path} is closed")
            try:
                if _signature(os.stat(self._path)) != self._sig:
                    return None  # reloading reads the file: the blocking call does it
            except OSError:
                return None  # the blocking call reports it
            return look(self._kek)
        finally:
            self._lock.release()

    def destroy(self, customer: str) -> datetime:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                tomb = self._state["erased"].get(ctag)
                if tomb is not None:
                    return datetime.fromisoformat(tomb["destroyed_at"])
                when = _now()
                state = copy.deepcopy(self._state)
                dek_id = state["customers"].pop(ctag, None)
                if dek_id is not None:
                    self._cache.pop(dek_id, None)  # drop the plaintext key first
                    state["deks"].pop(dek_id, None)
                    state["destroyed"][dek_id] = when
                state["erased"][ctag] = {"destroyed_at": when, "dek_id": dek_id}
                self._commit(state)
            return datetime.fromisoformat(when)

    def destroyed_at(self, customer: str) -> datetime | None:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            tomb = self._state["erased"].get(ctag)
            return None if tomb is None else datetime.fromisoformat(tomb["destroyed_at"])

    def is_destroyed(self, dek_id: str) -> bool:
        with self._lock:
            self._fresh()
            return dek_id in self._state["destroyed"]

    def reinstate(self, customer: str) -> None:
        ctag = self._tagger.customer_tag(customer)
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                if ctag not in self._state["erased"]:
                    return
                state = copy.deepcopy(self._state)
                del state["erased"][ctag]
                self._commit(state)

    def rotate_kek(self, new_kek: KekSource) -> int:
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                old = self._fresh()
                link = self._state["kek"].get("link")
                if link is not None:
                    raise RotationUnfinished(
                        f"keyring {self._path} still links KEK version {link['from']} to {link['to']}: "
                        "finish that rotation before starting another"
                    )
                state = copy.deepcopy(self._state)
                version = self._version + 1
                entry, new = _new_kek_version(new_kek, version)
                state["kek"]["versions"][str(version)] = entry
                state["kek"]["current"] = version
                # Processes still holding ``old`` follow this to ``new`` (see the module docstring).
                state["kek"]["link"] = {
                    "from": self._version,
                    "to": version,
                    "wrapped": _seal(old, new, _link_ad(self._version, version)),
                    "created_at": _now(),
                }
                index_key = self._unwrap(old, state["index_key"], _INDEX_KEY_AD, "index key")
                state["index_key"] = {"kek": version, "wrapped": _seal(new, index_key, _INDEX_KEY_AD)}
                for dek_id, item in state["deks"].items():
                    ad = dek_id.encode("ascii")
                    key = self._unwrap(old, item, ad, f"data key {dek_id}")
                    item.update(kek=version, wrapped=_seal(new, key, ad))
                _drop_unused_kek_versions(state)
                self._commit(state)
                self._kek, self._version = new, version
            return version

    def finish_rotation(self) -> int | None:
        """Remove the rotation link and the previous KEK version: from now on
        only the current KEK opens the file. Returns the version dropped, or
        None if there was no rotation to finish. A process still holding the
        previous KEK that has not read the file since the rotation is locked
        out (``KeyringLocked``) by this: call it once every process runs on
        the new KEK."""
        with self._lock:
            self._fresh()
            with self._file_lock.held():
                self._fresh()
                link = self._state["kek"].get("link")
                if link is None:
                    return None
                state = copy.deepcopy(self._state)
                del state["kek"]["link"]
                _drop_unused_kek_versions(state)
                self._commit(state)
            return int(link["from"])

    def check(self) -> None:
        with self._lock:
            kek = self._fresh()
            entry = self._state["kek"]["versions"][str(self._version)]
            if _try_open(kek, entry["check"], _check_ad(self._version)) != _CHECK_PLAINTEXT:
                raise KeyringCorrupt(f"keyring {self._path} failed its KEK check")
            self._unwrap(kek, self._state["index_key"], _INDEX_KEY_AD, "index key")

    # ----- internals (call with self._lock held) ------------------------------

    def _fresh(self) -> bytes:
        """Reload the file if another process replaced it; return the KEK."""
        if self._kek is None:
            raise KeyringLocked(f"keyring {self._path} is closed")
        try:
            sig = _signature(os.stat(self._path))
        except OSError as exc:
            raise KeyringError(f"cannot read keyring {self._path}: {exc.strerror}") from None
        if sig != self._sig:
            state = _read_state(self._path)
            kek = _current_kek(state, self._kek, self._version)  # follows a rotation link
            if kek is None:
                raise KeyringLocked(
                    f"keyring {self._path} was re-keyed since it was opened; reopen it with the current KEK"
                )
            self._state, self._kek, self._version, self._sig = state, kek, state["kek"]["current"], sig
            for dek_id in [d for d in self._cache if d not in state["deks"]]:
                del self._cache[dek_id]  # destroyed by another process
        return self._kek

    def _commit(self, state: dict[str, Any]) -> None:
        _write_atomic(self._path, state)
        self._state = state
        self._sig = _signature(os.stat(self._path))

    def _current(self, ctag: str, kek: bytes) -> DataKey | None:
        tomb = self._state["erased"].get(ctag)
        if tomb is not None:
            raise KeyDestroyed(
                f"this customer was erased at {tomb['destroyed_at']}; reinstate before writing again",
                datetime.fromisoformat(tomb["destroyed_at"]),
            )
        dek_id = self._state["customers"].get(ctag)
        return None if dek_id is None else DataKey(dek_id, self._key(dek_id, kek))

    def _key(self, dek_id: str, kek: bytes) -> bytes:
        key = self._cache.get(dek_id)
        if key is not None:
            self._cache.move_to_end(dek_id)
            return key
        when = self._state["destroyed"].get(dek_id)
        if when is not None:
            raise KeyDestroyed(f"data key {dek_id} was destroyed at {when}", datetime.fromisoformat(when))
        item = self._state["deks"].get(dek_id)
        if item is None:
            raise UnknownKey(f"no data key {dek_id} in keyring {self._path}")
        key = self._unwrap(kek, item, dek_id.encode("ascii"), f"data key {dek_id}")
        self._remember(dek_id, key)
        return key

    def _remember(self, dek_id: str, key: bytes) -> None:
        self._cache[dek_id] = key
        self._cache.move_to_end(dek_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _unwrap(self, kek: bytes, item: dict[str, Any], ad: bytes, what: str) -> bytes:
        # self._version is the version of ``kek``: every wrapped key uses it.
        if item.get("kek") != self._version:
            raise KeyringCorrupt(f"{what} in keyring {self._path} is wrapped by a KEK version it does not hold")
        key = _try_open(kek, item.get("wrapped"), ad)
        if key is None or len(key) != KEY_BYTES:
            raise KeyringCorrupt(f"{what} in keyring {self._path} does not unwrap (file damaged or edited)")
        return key


# ----- file and KEK helpers ---------------------------------------------------


def _try_open(kek: bytes, blob: object, ad: bytes) -> bytes | None:
    try:
        return _open(kek, blob, ad)  # type: ignore[arg-type]
    except (InvalidTag, ValueError, binascii.Error):
        return None


def _derive_passphrase(secret: str, params: ScryptParams, salt: bytes) -> bytes:
    # NFC so the same passphrase typed on two systems derives the same KEK.
    data = unicodedata.normalize("NFC", secret).encode("utf-8")
    return Scrypt(salt=salt, length=KEY_BYTES, n=params.n, r=params.r, p=params.p).derive(data)


def _new_kek_version(source: KekSource, version: int) -> tuple[dict[str, Any], bytes]:
    if isinstance(source, Passphrase):
        salt = os.urandom(16)
        kek = _derive_passphrase(source.secret, source.params, salt)
        p = source.params
        entry: dict[str, Any] = {"kind": "passphrase", "scrypt": {"n": p.n, "r": p.r, "p": p.p, "salt": _b64(salt)}}
    elif isinstance(source, KeyFile):
        kek = source.read()
        entry = {"kind": "keyfile"}
    else:
        raise TypeError("KEK source must be a Passphrase or a KeyFile")
    entry["check"] = _seal(kek, _CHECK_PLAINTEXT, _check_ad(version))
    entry["created_at"] = _now()
    return entry, kek


def _unlock(path: Path, entry: dict[str, Any], version: int, source: KekSource) -> bytes:
    kind = entry.get("kind")
    if kind == "passphrase":
        if not isinstance(source, Passphrase):
            raise KeyringLocked(f"keyring {path} is locked with a passphrase, not a key file")
        try:
            s = entry["scrypt"]
            params = ScryptParams(n=s["n"], r=s["r"], p=s["p"])
            params.check()
            salt = _unb64(s["salt"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise KeyringCorrupt(f"keyring {path} has unreadable scrypt parameters") from None
        kek = _derive_passphrase(source.secret, params, salt)
        wrong = f"wrong passphrase for keyring {path}"
    elif kind == "keyfile":
        if not isinstance(source, KeyFile):
            raise KeyringLocked(f"keyring {path} is locked with a key file, not a passphrase")
        kek = source.read()
        wrong = f"wrong key file for keyring {path}"
    else:
        raise KeyringCorrupt(f"keyring {path} has an unknown KEK kind")
    if _try_open(kek, entry.get("check"), _check_ad(version)) != _CHECK_PLAINTEXT:
        raise WrongPassphrase(wrong)
    return kek


def _check_dek_id(dek_id: object) -> None:
    if not isinstance(dek_id, str) or not _DEK_ID.fullmatch(dek_id):
        raise UnknownKey("malformed data key id")


def _current_kek(state: dict[str, Any], kek: bytes, version: int) -> bytes | None:
    """The current KEK of ``state`` given ``kek`` of ``version``: ``kek`` itself,
    or the one the rotation link seals under it; None if neither checks out."""
    current = state["kek"]["current"]
    if version != current:
        link = state["kek"].get("link")
        if link is None or link["from"] != version:
            return None
        opened = _try_open(kek, link["wrapped"], _link_ad(version, current))
        if opened is None or len(opened) != KEY_BYTES:
            return None
        kek = opened
    entry = state["kek"]["versions"][str(current)]
    return kek if _try_open(kek, entry.get("check"), _check_ad(current)) == _CHECK_PLAINTEXT else None


def _unlock_state(path: Path, state: dict[str, Any], source: KekSource) -> tuple[bytes, int]:
    """(the current KEK, the version ``source`` unlocks): the current version,
    else the previous one through the rotation link."""
    current = state["kek"]["current"]
    versions = state["kek"]["versions"]
    try:
        return _unlock(path, versions[str(current)], current, source), current
    except KeyringLocked as first:
        link = state["kek"].get("link")
        if link is None:
            raise
        try:
            old = _unlock(path, versions[str(link["from"])], link["from"], source)
        except KeyringLocked as second:
            # "Wrong passphrase" says more than "not a key file" when the previous KEK was of the other kind.
            raise (second if isinstance(second, WrongPassphrase) and not isinstance(first, WrongPassphrase)
                   else first) from None
    kek = _current_kek(state, old, link["from"])
    if kek is None:
        raise KeyringCorrupt(f"keyring {path}: the link from KEK version {link['from']} does not unwrap")
    return kek, link["from"]


def _drop_unused_kek_versions(state: dict[str, Any]) -> None:
    used = {state["kek"]["current"], state["index_key"]["kek"]}
    if "link" in state["kek"]:
        used.add(state["kek"]["link"]["from"])
    used.update(item["kek"] for item in state["deks"].values())
    versions = state["kek"]["versions"]
    for v in [v for v in versions if int(v) not in used]:
        del versions[v]


def _read_state(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyringError(f"keyring {path} does not exist") from None
    except OSError as exc:
        raise KeyringError(f"cannot read keyring {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & 0o077:
            raise KeyringError(f"keyring {path} is open to group or others (mode {mode & 0o777:o}); chmod 600 it")
        raw = f.read()
    try:
        state = json.loads(raw)
        if state.get("format") != FORMAT:
            raise ValueError
        current = state["kek"]["current"]
        if not isinstance(current, int) or not isinstance(state["kek"]["versions"][str(current)], dict):
            raise ValueError
        for part in ("deks", "customers", "destroyed", "erased"):
            if not isinstance(state[part], dict):
                raise ValueError
        if not isinstance(state["index_key"], dict):
            raise ValueError
        link = state["kek"].get("link")  # absent in files never rotated, or rotated before links existed
        if link is not None and not (
            isinstance(link, dict) and link.get("to") == current and isinstance(link.get("from"), int)
            and link["from"] != current and isinstance(state["kek"]["versions"][str(link["from"])], dict)
            and isinstance(link.get("wrapped"), str)
        ):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyringCorrupt(f"keyring {path} is not a {FORMAT} file") from None
    return state


def _write_atomic(path: Path, state: dict[str, Any]) -> None:
    """Temp file in the same directory (0600), fsync, rename, fsync the directory."""
    data = json.dumps(state, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
