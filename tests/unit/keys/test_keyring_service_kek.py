"""keys.keyring with a KEK from a key service (``ServiceKek``): what is recorded, what a wrong or absent
service says, rotation to and from it. The service is in memory here (``tests.support.memkek``); the real
Barbican on the dev stack is in ``tests/integration/test_barbican_kek.py``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from keys.keyring import LocalKeyring, codec
from keys.provider import KeyringLocked, KeyServiceError, Passphrase, ScryptParams, WrongPassphrase
from tests.support.memkek import MemoryKek

FAST = ScryptParams.fast()
PASS = Passphrase("correct horse battery staple", FAST)
REF_A = "https://kms.example:9311/v1/secrets/6a1e5a0e-6d2a-4d8b-9b55-0f0c1c7b2a01"
REF_B = "https://kms.example:9311/v1/secrets/0b7d8f54-2f1c-4f4e-8a5e-77a3c2d90b02"
GOLDEN = Path(__file__).parent / "golden" / "keyring_barbican.json"
GOLDEN_KEY = bytes(range(32))  # the golden file's KEK: a test value, in no real keyring


@pytest.fixture
def path(tmp_path):
    return tmp_path / "keyring.json"


def _versions(path):
    return json.loads(path.read_bytes())["kek"]["versions"]


def test_the_file_records_the_kind_and_the_reference_never_the_key(path):
    kek = MemoryKek(REF_A)
    with LocalKeyring.create(path, kek) as ring:
        alice = ring.get_or_create_dek("alice")
    assert list(_versions(path).values()) == [
        {
            "kind": "barbican",
            "ref": REF_A,
            "check": _versions(path)["1"]["check"],
            "created_at": _versions(path)["1"]["created_at"],
        }
    ]
    raw = path.read_bytes()
    for form in (kek.key, kek.key.hex().encode(), base64.b64encode(kek.key), base64.urlsafe_b64encode(kek.key)):
        assert form not in raw
    with LocalKeyring.open(path, MemoryKek(REF_A, kek.key)) as ring:
        assert ring.get_dek(alice.dek_id) == alice.key


def test_another_secret_is_named_with_the_one_the_keyring_needs(path):
    LocalKeyring.create(path, MemoryKek(REF_A)).close()
    with pytest.raises(WrongPassphrase) as info:
        LocalKeyring.open(path, MemoryKek(REF_B))
    assert str(info.value) == (
        f"wrong KEK for keyring {path}: Barbican secret {REF_B} does not unlock it (KEK version 1 is Barbican "
        f"secret {REF_A})"
    )


def test_the_same_reference_with_another_key_is_wrong_too(path):
    LocalKeyring.create(path, MemoryKek(REF_A)).close()
    with pytest.raises(WrongPassphrase, match=f"Barbican secret {REF_A} does not unlock it$"):
        LocalKeyring.open(path, MemoryKek(REF_A))


def test_the_kinds_do_not_mix(path, tmp_path):
    LocalKeyring.create(path, PASS).close()
    with pytest.raises(KeyringLocked, match="locked with a passphrase, not a Barbican secret"):
        LocalKeyring.open(path, MemoryKek(REF_A))
    other = tmp_path / "other.json"
    LocalKeyring.create(other, MemoryKek(REF_A)).close()
    with pytest.raises(KeyringLocked, match="locked with a Barbican secret, not a passphrase"):
        LocalKeyring.open(other, PASS)


def test_a_service_that_does_not_answer_is_its_own_error_not_a_wrong_key(path):
    kek = MemoryKek(REF_A)
    LocalKeyring.create(path, kek).close()
    kek.down = True
    with pytest.raises(KeyServiceError) as info:
        LocalKeyring.open(path, kek)
    assert not isinstance(info.value, KeyringLocked)
    assert info.value.ref == REF_A and info.value.status is None
    assert str(info.value) == f"Barbican secret {REF_A}: no answer from the key service (ConnectFailure)"


def test_a_running_keyring_never_asks_the_service_again(path):
    kek = MemoryKek(REF_A)
    ring = LocalKeyring.create(path, kek)
    assert kek.fetches == 1
    kek.down = True  # the key service goes away: keys are still served (the KEK is in memory)
    alice = ring.get_or_create_dek("alice")
    ring._cache.clear()
    assert ring.get_dek(alice.dek_id) == alice.key
    ring.destroy("bob")
    ring.check()
    assert kek.fetches == 1


def test_rotation_from_a_passphrase_to_the_service_and_back(path):
    ring = LocalKeyring.create(path, PASS)
    alice = ring.get_or_create_dek("alice")
    kek = MemoryKek(REF_A)
    assert ring.rotate_kek(kek) == 2
    assert _versions(path)["2"]["kind"] == "barbican" and _versions(path)["2"]["ref"] == REF_A
    # Until finished, the passphrase still opens it (through the link), the service secret directly.
    assert LocalKeyring.open(path, PASS).unlocked_by == 1
    assert LocalKeyring.open(path, kek).get_dek(alice.dek_id) == alice.key
    ring.finish_rotation()
    assert list(_versions(path)) == ["2"]
    with pytest.raises(KeyringLocked, match="locked with a Barbican secret, not a passphrase"):
        LocalKeyring.open(path, PASS)
    # And back: a service KEK rotated to a passphrase.
    on_service = LocalKeyring.open(path, kek)
    back = Passphrase("back to a passphrase again", FAST)
    assert on_service.rotate_kek(back) == 3
    assert LocalKeyring.open(path, kek).unlocked_by == 2  # the secret opens it through the link
    on_service.finish_rotation()
    assert list(_versions(path)) == ["3"] and _versions(path)["3"]["kind"] == "passphrase"
    assert "ref" not in _versions(path)["3"]
    assert LocalKeyring.open(path, back).get_dek(alice.dek_id) == alice.key
    with pytest.raises(KeyringLocked, match="locked with a passphrase, not a Barbican secret"):
        LocalKeyring.open(path, kek)


def test_rotation_from_one_secret_to_another_follows_the_link(path):
    old, new = MemoryKek(REF_A), MemoryKek(REF_B)
    running = LocalKeyring.create(path, old)  # a process that keeps running on the old secret
    alice = running.get_or_create_dek("alice")
    operator = LocalKeyring.open(path, old)
    operator.rotate_kek(new)
    old.down = True  # the old secret's service may be gone: the running process needs nothing from it
    running._cache.clear()
    assert running.get_dek(alice.dek_id) == alice.key
    old.down = False
    assert LocalKeyring.open(path, old).unlocked_by == 1  # a restart on the old config, until finished
    operator.finish_rotation()
    with pytest.raises(WrongPassphrase, match=f"KEK version 2 is Barbican secret {REF_B}"):
        LocalKeyring.open(path, old)


def test_a_failed_fetch_during_rotation_changes_nothing(path):
    ring = LocalKeyring.create(path, PASS)
    ring.get_or_create_dek("alice")
    before = path.read_bytes()
    kek = MemoryKek(REF_A)
    kek.down = True
    with pytest.raises(KeyServiceError):
        ring.rotate_kek(kek)
    assert path.read_bytes() == before
    ring.check()


# ----- the file format ----------------------------------------------------------


def test_golden_barbican_keyring_decodes_re_encodes_and_opens(tmp_path):
    raw = GOLDEN.read_bytes()
    state = codec.decode(raw)
    assert codec.encode(state) == raw
    assert state.current_version.kind == "barbican" and state.current_version.ref == REF_A
    path = tmp_path / "keyring.json"
    path.write_bytes(raw)
    path.chmod(0o600)
    with LocalKeyring.open(path, MemoryKek(REF_A, GOLDEN_KEY)) as ring:
        ring.check()
        assert len(state.deks) == 1 and ring.get_dek(next(iter(state.deks)))


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v.pop("ref"),  # a key-service KEK without its reference
        lambda v: v.update(ref=None),
        lambda v: v.update(ref=7),
        lambda v: v.update(kind="passphrase"),  # a passphrase with a reference (and no scrypt)
        lambda v: v.update(kind="keyfile"),  # a key file with a reference
        lambda v: v.update(kind="vault"),  # a kind this code does not know
    ],
)
def test_a_damaged_service_version_is_refused(damage):
    doc = json.loads(GOLDEN.read_bytes())
    damage(doc["kek"]["versions"]["1"])
    with pytest.raises(ValueError):
        codec.decode(json.dumps(doc).encode())
