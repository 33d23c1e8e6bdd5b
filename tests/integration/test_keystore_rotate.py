"""`replicator keys rotate [--finish]` on the PostgreSQL key store, as on the keyring file."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from keys import KeyFile, WrongPassphrase
from replicator.cli import main
from replicator.keystore import PgKeyStore
from tests.support.pg import drop_schema, key_store_config
from tests.support.stack import stack_fixture


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@stack_fixture
def store(tmp_path, monkeypatch):
    """The embedded default's config, its [keys] pointed at a key store of its own (password by reference)."""
    var = tmp_path / "var"
    _, _, url = key_store_config(var, "rotate", monkeypatch)
    yield var, url
    asyncio.run(drop_schema(url))


def test_keys_rotate_and_finish_on_a_key_store(store, tmp_path):
    var, url = store
    with PgKeyStore.open(url, KeyFile(var / "kek.key")) as keys:
        made = {c: keys.get_or_create_dek(c) for c in ("ada", "bob", "cy")}
        keys.destroy("cy")
    new = tmp_path / "kek-2.key"
    result = cli("keys", "rotate", "--var", str(var), "--new-key-file", str(new), "--generate", "--json")
    assert result.exit_code == 0, result.output
    assert "[1/4] unlocking key store postgresql://" in result.output and ":replicator-dev@" not in result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (report["old_version"], report["new_version"], report["data_keys_rewrapped"]) == (1, 2, 2)
    assert report["erased_untouched"] == 1 and report["previous_still_opens"] is True
    for kek in (new, var / "kek.key"):  # the same data keys under either KEK until --finish
        with PgKeyStore.open(url, KeyFile(kek), create=False) as keys:
            assert keys.get_dek(made["ada"].dek_id) == made["ada"].key

    result = cli("keys", "rotate", "--var", str(var), "--finish")
    assert result.exit_code == 2 and "the one --finish retires" in result.output
    old = tmp_path / "old.key"
    old.write_bytes((var / "kek.key").read_bytes())
    old.chmod(0o600)
    (var / "kek.key").write_bytes(new.read_bytes())  # the operator points the config at the new KEK
    result = cli("keys", "rotate", "--var", str(var), "--finish")
    assert result.exit_code == 0, result.output
    assert "KEK version 1 retired; only version 2 (keyfile) opens it now" in result.output
    with PgKeyStore.open(url, KeyFile(var / "kek.key"), create=False) as keys:
        assert keys.get_dek(made["bob"].dek_id) == made["bob"].key
    with pytest.raises(WrongPassphrase):  # the previous KEK opens nothing now
        PgKeyStore.open(url, KeyFile(old), create=False)
