"""``replicator keys rotate``: rewrap every data key under a new KEK, with progress and a report.

The new KEK is named by reference, the way the config names the current one:
an environment variable that holds a passphrase, or a key file. It is never
taken from the command line, prompted for or echoed. The keyring's own
``rotate_kek`` does the work in one atomic write (objects are never
re-encrypted: they depend on the data keys, which do not change); around it
this module counts what the file holds, reopens the keyring with the new KEK
to prove it unlocks, and counts again from the file, so the report says what
the file now holds rather than what the code meant to do.

After a rotation, any process that still holds the keyring open with the old
KEK (the service, a running reconcile) refuses keys until it is restarted
with the config pointing at the new KEK.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from keys import KeyFile, LocalKeyring, Passphrase
from keys.provider import KekSource


class RotationError(Exception):
    """The rotation cannot start or did not leave the file as it should; the message says which."""


@dataclass(frozen=True)
class Inventory:
    """What a keyring file holds, read from the file (no key material, only ids and versions)."""

    kek_version: int
    kek_kind: str                     # "passphrase" | "keyfile"
    kek_versions: list[int]           # every version the file keeps
    data_keys: dict[str, int]         # dek id -> the KEK version that wraps it
    index_key_kek: int
    erased: int                       # erasure tombstones (no key: nothing to rewrap)


@dataclass(frozen=True)
class RotationReport:
    keyring: str
    old_version: int
    new_version: int
    old_kind: str
    new_kind: str
    data_keys_rewrapped: int
    index_key_rewrapped: bool
    erased_untouched: int
    versions_dropped: list[int]

    def to_json(self) -> dict:
        return asdict(self)


def inventory(path: Path) -> Inventory:
    state = json.loads(Path(path).read_text(encoding="utf-8"))
    current = state["kek"]["current"]
    return Inventory(kek_version=current, kek_kind=state["kek"]["versions"][str(current)]["kind"],
                     kek_versions=sorted(int(v) for v in state["kek"]["versions"]),
                     data_keys={d: item["kek"] for d, item in state["deks"].items()},
                     index_key_kek=state["index_key"]["kek"], erased=len(state["erased"]))


def new_kek(passphrase_env: str | None, key_file: Path | None, generate: bool = False) -> KekSource:
    """The new KEK from exactly one reference; errors name the reference, never its value."""
    if (passphrase_env is None) == (key_file is None):
        raise RotationError("name the new KEK with --new-passphrase-env VAR or --new-key-file PATH (one of them)")
    if passphrase_env is not None:
        if generate:
            raise RotationError("--generate makes a key file; it does not go with --new-passphrase-env")
        secret = os.environ.get(passphrase_env)
        if not secret:
            raise RotationError(f"environment variable {passphrase_env} (the new passphrase) is not set")
        try:
            return Passphrase(secret)
        except ValueError as e:  # too short: the message states the rule, not the value
            raise RotationError(f"{passphrase_env}: {e}") from None
    assert key_file is not None
    if generate:
        try:
            return KeyFile.generate(key_file)
        except FileExistsError:
            raise RotationError(f"key file {key_file} already exists; --generate makes a new one only") from None
        except OSError as e:
            raise RotationError(f"cannot create key file {key_file}: {e.strerror}") from None
    if not key_file.is_file():
        raise RotationError(f"key file {key_file} does not exist (add --generate to make one)")
    source = KeyFile(key_file)
    source.read()  # 32 bytes, readable: KeyringLocked says what is wrong
    return source


def _kind(source: KekSource) -> str:
    return "passphrase" if isinstance(source, Passphrase) else "keyfile"


def rotate(config, new: KekSource, say: Callable[[str], None] = lambda _: None) -> RotationReport:
    """Rotate the KEK of ``config``'s keyring to ``new``; ``say`` gets one line per phase."""
    from .app import open_keyring

    path = Path(config.keys.keyring)
    if not path.is_file():
        raise RotationError(f"no keyring at {path}: nothing to rotate")
    if isinstance(new, KeyFile) and config.keys.key_file is not None \
            and Path(new.path).resolve() == Path(config.keys.key_file).resolve():
        raise RotationError(f"{new.path} is the current key file; give a new one")
    current = f"the passphrase in ${config.keys.passphrase_env}" if config.keys.passphrase_env \
        else f"key file {config.keys.key_file}"
    say(f"[1/4] unlocking {path} with {current}")
    keyring = open_keyring(config)
    try:
        before = inventory(path)
        say(f"[2/4] KEK version {before.kek_version} ({before.kek_kind}) wraps {len(before.data_keys)} data keys "
            f"and the index key; {before.erased} erased customers hold no key")
        say(f"[3/4] rewrapping them under KEK version {before.kek_version + 1} ({_kind(new)}) in one atomic write")
        version = keyring.rotate_kek(new)
    finally:
        keyring.close()
    say(f"[4/4] reopening {path} with the new KEK")
    with LocalKeyring.open(path, new) as reopened:
        reopened.check()
    after = inventory(path)
    rewrapped = [d for d, v in after.data_keys.items() if v == version]
    if after.kek_version != version or len(rewrapped) != len(after.data_keys) or after.index_key_kek != version \
            or set(after.data_keys) != set(before.data_keys):
        raise RotationError(f"keyring {path} is not wholly under KEK version {version} after the rotation")
    return RotationReport(keyring=str(path), old_version=before.kek_version, new_version=version,
                          old_kind=before.kek_kind, new_kind=after.kek_kind, data_keys_rewrapped=len(rewrapped),
                          index_key_rewrapped=True, erased_untouched=after.erased,
                          versions_dropped=sorted(set(before.kek_versions) - set(after.kek_versions)))


def next_steps(config, new: KekSource, new_ref: str) -> list[str]:
    """What the operator must change so that the next start opens the keyring."""
    if isinstance(new, KeyFile):
        target = f'key_file = "{new.path}"' + (" (instead of passphrase_env)" if config.keys.passphrase_env else "")
    elif config.keys.passphrase_env and config.keys.passphrase_env != new_ref:
        target = (f"passphrase_env = \"{new_ref}\", or put the new passphrase in "
                  f"${config.keys.passphrase_env} where the service reads it")
    else:
        target = f'passphrase_env = "{new_ref}"' + (" (instead of key_file)" if config.keys.key_file else "")
    return [f"point [keys] at the new KEK: {target}",
            "restart every process that opens this keyring (service, reconcile): until then they refuse keys",
            "keep the new KEK safe before discarding the old one: without it no data key can be unwrapped"]
