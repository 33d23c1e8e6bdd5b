"""The keyring's KEK from the dev stack's real Barbican, behind its real Keystone.

A keyring made and reopened with the stack's test KEK (the payload of a Barbican secret, read with
the Keystone credentials of a clouds.yaml cloud); a wrong, missing, forbidden or short secret, and
wrong Keystone credentials, each a clear error naming the secret and what failed; rotation from a
passphrase to Barbican and back through ``replicator keys rotate``; and the KEK on no disk. The
outages (Barbican stopped at start, and under a running service) are in
``tests/fault/test_barbican_outage.py``.

The servers are required (``tests.support.stack.stack_env``): without them the tests fail, they never skip.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from keys import BarbicanKek, KeyringLocked, KeyServiceError, LocalKeyring, Passphrase, WrongPassphrase
from replicator.cli import main
from replicator.config import load_config
from replicator.embedded import LOCAL_REGIONS, config_text
from replicator.runtime import open_keyring
from tests.support.clouds import encodings
from tests.support.served import files_under, find
from tests.support.stack import stack_env

CUSTOMERS = ("alice", "bob", "carol")


def _versions(path):
    return json.loads(path.read_bytes())["kek"]["versions"]


def test_a_keyring_unlocked_by_the_barbican_kek(tmp_path, barbican):
    path = tmp_path / "keyring.json"
    with LocalKeyring.create(path, barbican.kek()) as ring:
        keys = {c: ring.get_or_create_dek(c) for c in CUSTOMERS}
        tag = ring.tagger().customer_tag("alice")
    (version,) = _versions(path).values()
    assert version["kind"] == "barbican" and version["ref"] == barbican.secret
    with LocalKeyring.open(path, barbican.kek()) as ring:  # a new Keystone session, as a restart has
        ring.check()
        assert {c: ring.get_dek(k.dek_id) for c, k in keys.items()} == {c: k.key for c, k in keys.items()}
        assert ring.tagger().customer_tag("alice") == tag
    kek = barbican.kek().fetch()
    assert len(kek) == 32
    assert not find({str(p): p.read_bytes() for p in files_under(tmp_path)}, {"the KEK": encodings(kek)})


def test_wrong_missing_forbidden_and_short_secrets_are_clear_errors(tmp_path, barbican):
    path = tmp_path / "keyring.json"
    LocalKeyring.create(path, barbican.kek()).close()
    before = path.read_bytes()

    other = barbican.create()  # a good 32-byte key, not this keyring's
    with pytest.raises(WrongPassphrase) as info:
        LocalKeyring.open(path, barbican.kek(other))
    assert str(info.value) == (
        f"wrong KEK for keyring {path}: Barbican secret {other} does not unlock it "
        f"(KEK version 1 is Barbican secret {barbican.secret})"
    )

    missing = barbican.missing_ref()
    with pytest.raises(KeyServiceError) as info:
        LocalKeyring.open(path, barbican.kek(missing))
    assert info.value.status == 404 and str(info.value) == f"Barbican secret {missing}: no such secret (HTTP 404)"

    swift_user = stack_env("REPLICATOR_TEST_SWIFT_CLOUD")  # a user of another project: Barbican's policy says no
    with pytest.raises(KeyServiceError) as info:
        LocalKeyring.open(path, barbican.kek(cloud=swift_user))
    assert info.value.status == 403
    assert str(info.value) == (
        f"Barbican secret {barbican.secret}: access denied to the user of cloud '{swift_user}' (HTTP 403)"
    )

    short = barbican.create(os.urandom(16))
    with pytest.raises(KeyringLocked, match=f"Barbican secret {short} holds 16 bytes, not a 32-byte KEK"):
        LocalKeyring.create(tmp_path / "short.json", barbican.kek(short))
    assert not (tmp_path / "short.json").exists()

    clouds = yaml.safe_load(barbican.clouds_yaml.read_text())
    password = clouds["clouds"][barbican.cloud]["auth"]["password"]
    clouds["clouds"][barbican.cloud]["auth"]["password"] = "not-the-password"
    wrong = tmp_path / "clouds.yaml"
    wrong.write_text(yaml.safe_dump(clouds))
    with pytest.raises(KeyServiceError) as info:
        LocalKeyring.open(path, BarbicanKek(barbican.secret, cloud=barbican.cloud, clouds_yaml=wrong))
    assert str(info.value) == (
        f"Barbican secret {barbican.secret}: Keystone refused the credentials of cloud '{barbican.cloud}' (HTTP 401)"
    )
    assert password not in str(info.value) and "not-the-password" not in str(info.value)
    assert path.read_bytes() == before  # nothing was written by any of them


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _config(tmp_path, kek: str):
    path = tmp_path / "replicator.toml"
    path.write_text(config_text("n1", LOCAL_REGIONS, kek=kek))
    return path


def test_rotation_from_a_passphrase_to_barbican_and_back(tmp_path, barbican, monkeypatch):
    monkeypatch.setenv("TEST_KEK_PASSPHRASE_1", "the first passphrase of this test")
    monkeypatch.setenv("TEST_KEK_PASSPHRASE_2", "the passphrase on the way back")
    config = _config(tmp_path, 'passphrase_env = "TEST_KEK_PASSPHRASE_1"')
    with open_keyring(load_config(config)) as ring:
        keys = {c: ring.get_or_create_dek(c) for c in CUSTOMERS}
        ring.destroy("carol")

    def same_keys(ring) -> None:
        assert {c: ring.get_dek(keys[c].dek_id) for c in ("alice", "bob")} == {c: keys[c].key for c in ("alice", "bob")}
        assert ring.is_destroyed(keys["carol"].dek_id)

    # 1. passphrase -> Barbican, with the new KEK named by reference on the command line.
    to_barbican = [
        "--new-barbican-secret",
        barbican.secret,
        "--new-barbican-cloud",
        barbican.cloud,
        "--new-clouds-yaml",
        str(barbican.clouds_yaml),
    ]
    result = _cli("keys", "rotate", "--config", str(config), *to_barbican, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (report["old_kind"], report["new_kind"], report["data_keys_rewrapped"]) == ("passphrase", "barbican", 2)
    assert any(f'barbican_secret = "{barbican.secret}"' in step for step in report["next"])
    # The operator points [keys] at Barbican, restarts, finishes.
    config = _config(
        tmp_path,
        f'barbican_secret = "{barbican.secret}"\nbarbican_cloud = "{barbican.cloud}"\n'
        f'clouds_yaml = "{barbican.clouds_yaml}"',
    )
    result = _cli("keys", "rotate", "--config", str(config), "--finish")
    assert result.exit_code == 0, result.output
    with open_keyring(load_config(config), create=False) as ring:
        same_keys(ring)
    with pytest.raises(KeyringLocked, match="locked with a Barbican secret, not a passphrase"):
        LocalKeyring.open(tmp_path / "keyring.json", Passphrase("the first passphrase of this test"))

    # 2. Barbican -> a passphrase again.
    result = _cli("keys", "rotate", "--config", str(config), "--new-passphrase-env", "TEST_KEK_PASSPHRASE_2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (report["old_kind"], report["new_kind"]) == ("barbican", "passphrase")
    config = _config(tmp_path, 'passphrase_env = "TEST_KEK_PASSPHRASE_2"')
    assert _cli("keys", "rotate", "--config", str(config), "--finish").exit_code == 0
    with open_keyring(load_config(config), create=False) as ring:
        same_keys(ring)
    with pytest.raises(KeyringLocked, match="locked with a passphrase, not a Barbican secret"):
        LocalKeyring.open(tmp_path / "keyring.json", barbican.kek())
    assert [v["kind"] for v in _versions(tmp_path / "keyring.json").values()] == ["passphrase"]


def test_rotating_to_the_current_secret_or_a_missing_one_changes_nothing(tmp_path, barbican):
    config = _config(
        tmp_path,
        f'barbican_secret = "{barbican.secret}"\nbarbican_cloud = "{barbican.cloud}"\n'
        f'clouds_yaml = "{barbican.clouds_yaml}"',
    )
    open_keyring(load_config(config)).close()
    before = (tmp_path / "keyring.json").read_bytes()
    common = ["--new-barbican-cloud", barbican.cloud, "--new-clouds-yaml", str(barbican.clouds_yaml)]
    result = _cli("keys", "rotate", "--config", str(config), "--new-barbican-secret", barbican.secret, *common)
    assert result.exit_code == 2 and f"Barbican secret {barbican.secret} is the current KEK" in result.output
    missing = barbican.missing_ref()
    result = _cli("keys", "rotate", "--config", str(config), "--new-barbican-secret", missing, *common)
    assert result.exit_code == 2, result.output
    assert f"Barbican secret {missing}: no such secret (HTTP 404); nothing was rotated" in result.output
    assert (tmp_path / "keyring.json").read_bytes() == before
