"""``replicator keys rotate [--finish]``: rewrap every data key under a new KEK, then retire the old one.

The new KEK is named by reference, the way the config names the current one:
an environment variable that holds a passphrase, a key file, or a Barbican
secret (its URL, read with a clouds.yaml cloud's or the ``OS_*`` variables'
Keystone credentials). It is never taken from the command line, prompted for
or echoed. The keyring's own
``rotate_kek`` does the work in one atomic write (objects are never
re-encrypted: they depend on the data keys, which do not change); around it
this module counts what the file holds, reopens the keyring with the new KEK
to prove it unlocks, and counts again from the file, so the report says what
the file now holds rather than what the code meant to do.

A rotation happens in two steps, so that no process has an outage:

1. ``rotate``: the file is rewrapped under the new KEK and keeps a link from
   the previous KEK to the new one (``keys.keyring``). Processes running with
   the previous KEK follow the link at their next key lookup and go on; a
   process (re)started with the previous KEK still opens the keyring.
2. ``finish`` (``--finish``), once every config names the new KEK and every
   process has been restarted: the link and the previous version go, and
   the previous KEK opens nothing. It refuses to run with a config that
   still names the previous KEK (that process would be locked out next).

Each step that changed the keyring is an audit record in the commands' chain
(``replicator.cli.operator_audit``): ``keys.rotate`` with outcome
``kek-v<old>-to-v<new>``, ``keys.rotate-finish`` with ``kek-v<n>-retired``;
the principal is the operator's ``cli:<login name>``. Versions only, never a
key or a reference to one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from keys import BarbicanKek, KeyFile, LocalKeyring, Passphrase
from keys.keyring import KeyringState, RotationUnfinished, codec
from keys.keyring.kek import kind_of
from keys.provider import KekSource
from replicator.cli.options import config_option, var_option
from replicator.journal.pgurl import parse_url
from replicator.keystore import PgKeyStore


class RotationError(Exception):
    """The rotation cannot start or did not leave the file as it should; the message says which."""


@dataclass(frozen=True)
class Inventory:
    """What a keyring file holds, read from the file (no key material, only ids and versions)."""

    kek_version: int
    kek_kind: str  # "passphrase" | "keyfile" | "barbican"
    kek_versions: list[int]  # every version the file keeps
    data_keys: dict[str, int]  # dek id -> the KEK version that wraps it
    index_key_kek: int
    erased: int  # erasure tombstones (no key: nothing to rewrap)
    linked_from: int | None  # the previous KEK version a rotation left linked, until --finish


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
    previous_still_opens: bool  # the old KEK opens the file through the link, until --finish

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinishReport:
    keyring: str
    kek_version: int
    kek_kind: str
    version_retired: int | None  # None: there was no rotation to finish

    def to_json(self) -> dict:
        return asdict(self)


def inventory(state: KeyringState) -> Inventory:
    """What the records hold (no key is unwrapped)."""
    return Inventory(
        kek_version=state.kek_current,
        kek_kind=state.kek_versions[state.kek_current].kind,
        kek_versions=sorted(state.kek_versions),
        data_keys={d: item.kek for d, item in state.deks.items()},
        index_key_kek=state.index_key.kek,
        erased=len(state.erased),
        linked_from=state.link.old if state.link else None,
    )


class Records:
    """The key records ``config`` names, read straight from where they live: the keyring file
    (through its one codec) or the key store (through its own reading of its rows)."""

    def __init__(self, config) -> None:
        self.config = config
        self.file = Path(config.keys.keyring) if config.keys.keyring is not None else None
        self.where = str(self.file) if self.file is not None else f"key store {parse_url(config.keys.store).shown}"

    def exist(self) -> bool:
        return self.file is None or self.file.is_file()  # a store's absence shows when it is opened

    def inventory(self, opened: LocalKeyring | PgKeyStore | None = None) -> Inventory:
        """What the records hold now; ``opened``, a provider already on them, saves opening another."""
        if self.file is not None:
            return inventory(codec.decode(self.file.read_bytes()))
        if isinstance(opened, PgKeyStore):
            return inventory(opened.state())
        with self.open() as store:
            assert isinstance(store, PgKeyStore)  # no file: a store
            return inventory(store.state())

    def open(self, kek: KekSource | None = None) -> LocalKeyring | PgKeyStore:
        """A provider on the records, unlocked by ``kek`` (default: the config's)."""
        from replicator.runtime import kek_source

        kek = kek or kek_source(self.config)
        if self.file is not None:
            return LocalKeyring.open(self.file, kek)
        return PgKeyStore.open(self.config.keys.store, kek, create=False)


@dataclass(frozen=True)
class BarbicanRef:
    """A new KEK in Barbican, as the command line names it."""

    secret: str
    cloud: str | None = None
    clouds_yaml: Path | None = None

    def source(self) -> BarbicanKek:
        try:
            return BarbicanKek(self.secret, cloud=self.cloud, clouds_yaml=self.clouds_yaml)
        except ValueError as e:
            raise RotationError(f"--new-barbican-secret: {e}") from None


def new_kek(
    passphrase_env: str | None, key_file: Path | None, generate: bool = False, barbican: BarbicanRef | None = None
) -> KekSource:
    """The new KEK from exactly one reference; errors name the reference, never its value."""
    if [passphrase_env, key_file, barbican].count(None) != 2:
        raise RotationError(
            "name the new KEK with --new-passphrase-env VAR, --new-key-file PATH or --new-barbican-secret URL "
            "(one of them)"
        )
    if barbican is not None:
        if generate:
            raise RotationError("--generate makes a key file; it does not go with --new-barbican-secret")
        return barbican.source()  # rotate_kek fetches it: KeyServiceError names the secret and what failed
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


def _current_ref(config) -> str:
    if config.keys.barbican_secret:
        return f"Barbican secret {config.keys.barbican_secret}"
    return (
        f"the passphrase in ${config.keys.passphrase_env}"
        if config.keys.passphrase_env
        else f"key file {config.keys.key_file}"
    )


def can_rotate(config) -> None:
    """Raise ``RotationError`` if ``config``'s keyring cannot be rotated now (checked before --generate
    makes a key file that would then go unused)."""
    records = Records(config)
    if not records.exist():
        raise RotationError(f"no keyring at {records.where}: nothing to rotate")
    pending = records.inventory()
    if pending.linked_from is not None:
        # At most two KEKs ever open the file; a chain would keep every old one alive.
        raise RotationError(
            f"the rotation to KEK version {pending.kek_version} is not finished (version "
            f"{pending.linked_from} still opens the keyring): once every process runs on version "
            f"{pending.kek_version}, run `replicator keys rotate --finish`, then rotate again"
        )


def rotate(config, new: KekSource, say: Callable[[str], None] = lambda _: None) -> RotationReport:
    """Rotate the KEK of ``config``'s keyring to ``new``; ``say`` gets one line per phase."""
    records = Records(config)
    path = records.where
    can_rotate(config)
    if (
        isinstance(new, KeyFile)
        and config.keys.key_file is not None
        and Path(new.path).resolve() == Path(config.keys.key_file).resolve()
    ):
        raise RotationError(f"{new.path} is the current key file; give a new one")
    if isinstance(new, BarbicanKek) and new.ref == config.keys.barbican_secret:
        raise RotationError(f"Barbican secret {new.ref} is the current KEK; give a new one")
    say(f"[1/4] unlocking {path} with {_current_ref(config)}")
    keyring = records.open()
    try:
        before = records.inventory(keyring)
        say(
            f"[2/4] KEK version {before.kek_version} ({before.kek_kind}) wraps {len(before.data_keys)} data keys "
            f"and the index key; {before.erased} erased customers hold no key"
        )
        say(
            f"[3/4] rewrapping them under KEK version {before.kek_version + 1} ({kind_of(new)}) in one atomic write, "
            f"linking version {before.kek_version} to it for the processes still running with it"
        )
        try:
            version = keyring.rotate_kek(new)
        except RotationUnfinished as e:  # another rotation got in between our check and the lock
            raise RotationError(str(e)) from None
    finally:
        keyring.close()
    say(f"[4/4] reopening {path} with the new KEK, and with the previous one through the link")
    with records.open(new) as reopened:
        reopened.check()
        by_new = reopened.unlocked_by
    with records.open() as previous:  # what a process started on the old config gets
        previous.check()
        by_previous = previous.unlocked_by
        after = records.inventory(previous)
    rewrapped = [d for d, v in after.data_keys.items() if v == version]
    if (
        after.kek_version != version
        or len(rewrapped) != len(after.data_keys)
        or after.index_key_kek != version
        or set(after.data_keys) != set(before.data_keys)
        or by_new != version
        or by_previous != before.kek_version
        or after.linked_from != before.kek_version
    ):
        raise RotationError(
            f"keyring {path} is not wholly under KEK version {version} with version "
            f"{before.kek_version} linked to it after the rotation"
        )
    return RotationReport(
        keyring=str(path),
        old_version=before.kek_version,
        new_version=version,
        old_kind=before.kek_kind,
        new_kind=after.kek_kind,
        data_keys_rewrapped=len(rewrapped),
        index_key_rewrapped=True,
        erased_untouched=after.erased,
        versions_dropped=sorted(set(before.kek_versions) - set(after.kek_versions)),
        previous_still_opens=True,
    )


def finish(config, say: Callable[[str], None] = lambda _: None) -> FinishReport:
    """Retire the previous KEK of ``config``'s keyring (the rotation link); refuse while the config names it."""
    records = Records(config)
    path = records.where
    if not records.exist():
        raise RotationError(f"no keyring at {path}: nothing to finish")
    say(f"[1/3] unlocking {path} with {_current_ref(config)}")
    with records.open() as keyring:
        before = records.inventory(keyring)
        if before.linked_from is None:
            say(f"[2/3] no rotation to finish: only KEK version {before.kek_version} opens the keyring")
            return FinishReport(
                keyring=str(path), kek_version=before.kek_version, kek_kind=before.kek_kind, version_retired=None
            )
        if keyring.unlocked_by != before.kek_version:
            raise RotationError(
                f"the config opens the keyring with KEK version {keyring.unlocked_by}, the one --finish retires: "
                f"point [keys] at KEK version {before.kek_version} (and restart every process that opens this "
                "keyring) first"
            )
        say(f"[2/3] removing the link from KEK version {before.linked_from} to {before.kek_version}")
        retired = keyring.finish_rotation()
    say(f"[3/3] reopening {path} with {_current_ref(config)}")
    with records.open() as reopened:
        reopened.check()
        after = records.inventory(reopened)
    if after.linked_from is not None or after.kek_versions != [after.kek_version] or retired is None:
        raise RotationError(f"keyring {path} still keeps a KEK version other than {after.kek_version}")
    return FinishReport(
        keyring=str(path), kek_version=after.kek_version, kek_kind=after.kek_kind, version_retired=retired
    )


def next_steps(config, new: KekSource, new_ref: str) -> list[str]:
    """What the operator must change so that the next start opens the keyring."""
    current = [k for k in ("passphrase_env", "key_file", "barbican_secret") if getattr(config.keys, k)]

    def instead(field: str) -> str:
        return "".join(f" (instead of {k})" for k in current if k != field)

    if isinstance(new, BarbicanKek):
        target = (
            f'barbican_secret = "{new.ref}"'
            + (f', barbican_cloud = "{new.cloud}"' if new.cloud else " (Keystone credentials from OS_*)")
            + (f', clouds_yaml = "{new.clouds_yaml}"' if new.clouds_yaml else "")
            + instead("barbican_secret")
        )
    elif isinstance(new, KeyFile):
        target = f'key_file = "{new.path}"' + instead("key_file")
    elif config.keys.passphrase_env and config.keys.passphrase_env != new_ref:
        target = (
            f'passphrase_env = "{new_ref}", or put the new passphrase in '
            f"${config.keys.passphrase_env} where the service reads it"
        )
    else:
        target = f'passphrase_env = "{new_ref}"' + instead("passphrase_env")
    return [
        f"point [keys] at the new KEK: {target}",
        "restart every process that opens this keyring (service, reconcile, work), one at a time if you like: "
        "until then they go on with the previous KEK through the link, nothing is refused",
        "then run `replicator keys rotate --finish` with that config to retire the previous KEK; until then "
        "it still opens the keyring, so keep it as secret as the new one",
        "keep the new KEK safe before discarding the old one: without it no data key can be unwrapped",
    ]


@click.group("keys")
def keys_group() -> None:
    """The keyring."""


@keys_group.command("rotate")
@config_option("Config file (default: the embedded default's, under --var); its [keys] opens the keyring.")
@var_option
@click.option(
    "--new-passphrase-env",
    metavar="VAR",
    help="Environment variable holding the new passphrase (at least 12 characters).",
)
@click.option(
    "--new-key-file", type=click.Path(dir_okay=False, path_type=Path), help="File holding the new 32-byte KEK."
)
@click.option("--generate", is_flag=True, help="Create --new-key-file (32 random bytes, mode 0600) first.")
@click.option("--new-barbican-secret", metavar="URL", help="Barbican secret whose 32-byte payload is the new KEK.")
@click.option(
    "--new-barbican-cloud",
    metavar="CLOUD",
    help="clouds.yaml cloud that may read it (default: Keystone credentials from the OS_* variables).",
)
@click.option(
    "--new-clouds-yaml",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The clouds.yaml holding --new-barbican-cloud (default: openstacksdk's search path).",
)
@click.option(
    "--finish",
    "finish_",
    is_flag=True,
    help="Retire the previous KEK once every process runs on the new one (the config must name it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def keys_rotate(
    config_path: Path | None,
    var_dir: Path,
    new_passphrase_env: str | None,
    new_key_file: Path | None,
    generate: bool,
    new_barbican_secret: str | None,
    new_barbican_cloud: str | None,
    new_clouds_yaml: Path | None,
    finish_: bool,
    as_json: bool,
) -> None:
    """Rewrap every data key and the index key under a new KEK (the keyring file or the key store: one
    atomic write or transaction; objects untouched).

    Running processes go on with the previous KEK until `--finish` retires it.
    The new KEK is named by reference, never typed on the command line. Exit 0 rotated, 2 not rotated."""

    from keys import KeyringError
    from replicator.config import ConfigError, load_config
    from replicator.embedded import CONFIG_NAME

    if finish_:
        try:
            if new_passphrase_env or new_key_file or generate or new_barbican_secret:
                raise RotationError("--finish takes no new KEK: it retires the previous one")
            config = load_config(config_path or var_dir / CONFIG_NAME)
            done = finish(config, say=lambda line: click.echo(line, err=True))
        except (ConfigError, RotationError, KeyringError) as e:
            click.echo(
                f"replicator: keys rotate --finish: {e}; nothing was finished"
                if not isinstance(e, ConfigError)
                else f"replicator: {e}",
                err=True,
            )
            sys.exit(2)
        if done.version_retired is not None:
            _audit(config, "keys.rotate-finish", f"kek-v{done.version_retired}-retired")
        if as_json:
            click.echo(json.dumps(done.to_json(), indent=1))
        elif done.version_retired is None:
            click.echo(f"nothing to finish: only KEK version {done.kek_version} opens {done.keyring}")
        else:
            click.echo(
                f"finished {done.keyring}: KEK version {done.version_retired} retired; only version "
                f"{done.kek_version} ({done.kek_kind}) opens it now"
            )
        return
    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        can_rotate(config)
        if (new_barbican_cloud or new_clouds_yaml) and not new_barbican_secret:
            raise RotationError("--new-barbican-cloud and --new-clouds-yaml go with --new-barbican-secret")
        if new_clouds_yaml and not new_barbican_cloud:
            raise RotationError("--new-clouds-yaml goes with --new-barbican-cloud")
        barbican = None
        if new_barbican_secret:
            barbican = BarbicanRef(new_barbican_secret, new_barbican_cloud, new_clouds_yaml)
        new = new_kek(new_passphrase_env, new_key_file, generate, barbican)
        report = rotate(config, new, say=lambda line: click.echo(line, err=True))
    except (ConfigError, RotationError, KeyringError) as e:
        click.echo(
            f"replicator: keys rotate: {e}; nothing was rotated"
            if not isinstance(e, ConfigError)
            else f"replicator: {e}",
            err=True,
        )
        sys.exit(2)
    _audit(config, "keys.rotate", f"kek-v{report.old_version}-to-v{report.new_version}")
    steps = next_steps(config, new, new_passphrase_env or str(new_key_file))
    if as_json:
        click.echo(json.dumps({**report.to_json(), "next": steps}, indent=1))
        return
    click.echo(
        f"rotated {report.keyring}: KEK version {report.old_version} ({report.old_kind}) -> "
        f"{report.new_version} ({report.new_kind})"
    )
    click.echo(
        f"rewrapped: {report.data_keys_rewrapped} data keys and the index key; "
        f"{report.erased_untouched} erased customers (no key) untouched; "
        f"KEK versions dropped from the file: {', '.join(map(str, report.versions_dropped)) or 'none'}"
    )
    for step in steps:
        click.echo(f"next: {step}")


def _audit(config, action: str, outcome: str) -> None:
    """The rotation's audit record (the keyring has changed: a record that cannot be written is said, not fatal)."""
    import asyncio

    from replicator.cli.erase import operator_principal
    from replicator.cli.operator_audit import record

    done = asyncio.run(record(config, principal=operator_principal().name, action=action, outcome=outcome))
    if done != "ok":
        click.echo(f"replicator: keys rotate: audit record {action}: {done}", err=True)
