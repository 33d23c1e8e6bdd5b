"""keys.keyring: the local keyring file, its KEK, DEKs, erasure and rotation, as a file.

What every key provider guarantees (two handles, erasure, rotation) is in
tests/conformance/keys_suite.py, which runs on this keyring too."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from keys.keyring import KeyringExists, LocalKeyring, RotationUnfinished
from keys.provider import (
    DataKey,
    KeyDestroyed,
    KeyFile,
    KeyProvider,
    KeyringCorrupt,
    KeyringError,
    KeyringLocked,
    Passphrase,
    ScryptParams,
    UnknownKey,
    WrongPassphrase,
)

FAST = ScryptParams.fast()
PASS = Passphrase("correct horse battery staple", FAST)
OTHER = Passphrase("a different passphrase entirely", FAST)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "keyring.json"


@pytest.fixture
def ring(path):
    with LocalKeyring.create(path, PASS) as kr:
        yield kr


def _state(path):
    return json.loads(path.read_bytes())


def test_is_a_key_provider(ring):
    assert isinstance(ring, KeyProvider)


def test_create_writes_mode_0600_and_leaves_no_temp_files(path, ring):
    ring.get_or_create_dek("alice")
    ring.destroy("bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json", "keyring.json.lock"]


def test_create_refuses_an_existing_file(path, ring):
    with pytest.raises(KeyringExists):
        LocalKeyring.create(path, PASS)


def test_open_create_makes_then_reopens(path):
    a = LocalKeyring.open(path, PASS, create=True)
    dek_id, key = a.get_or_create_dek("alice")
    b = LocalKeyring.open(path, PASS, create=True)
    assert b.get_dek(dek_id) == key


def test_open_missing_file_is_a_clear_error(path):
    with pytest.raises(KeyringError, match="does not exist"):
        LocalKeyring.open(path, PASS)


def test_dek_is_created_once_and_survives_reopen(path, ring):
    first = ring.get_or_create_dek("alice")
    again = ring.get_or_create_dek("alice")
    assert (first.dek_id, first.key) == (again.dek_id, again.key)
    assert len(first.key) == 32 and first.dek_id.startswith("dek_") and first.dek_id.isascii()
    assert ring.get_or_create_dek("bob").key != first.key
    reopened = LocalKeyring.open(path, PASS)
    assert reopened.get_dek(first.dek_id) == first.key
    assert reopened.get_or_create_dek("alice").dek_id == first.dek_id


def test_dek_unpacks_like_a_pair(ring):
    dek_id, key = ring.get_or_create_dek("alice")
    assert isinstance(dek_id, str) and isinstance(key, bytes)


def test_file_holds_no_customer_id_and_no_clear_key(path, ring):
    dek_id, key = ring.get_or_create_dek("alice-customer-42")
    raw = path.read_bytes()
    assert b"alice-customer-42" not in raw
    assert key not in raw and base64.b64encode(key) not in raw
    assert list(_state(path)["customers"]) == [ring.tagger().customer_tag("alice-customer-42")]


def test_wrong_passphrase_is_a_clear_error(path, ring):
    ring.get_or_create_dek("alice")
    with pytest.raises(WrongPassphrase) as info:
        LocalKeyring.open(path, OTHER)
    assert str(info.value) == f"wrong passphrase for keyring {path}"
    assert OTHER.secret not in str(info.value)
    assert isinstance(info.value, KeyringLocked)


def test_key_file_kek(tmp_path, path):
    kf = KeyFile.generate(tmp_path / "kek.bin")
    assert stat.S_IMODE(kf.path.stat().st_mode) == 0o600
    ring = LocalKeyring.create(path, kf)
    dek_id, key = ring.get_or_create_dek("alice")
    assert LocalKeyring.open(path, kf).get_dek(dek_id) == key
    wrong = KeyFile.generate(tmp_path / "other.bin")
    with pytest.raises(WrongPassphrase, match="wrong key file"):
        LocalKeyring.open(path, wrong)
    with pytest.raises(KeyringLocked, match="key file, not a passphrase"):
        LocalKeyring.open(path, PASS)


def test_key_file_must_hold_32_bytes(tmp_path, path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"x" * 31)
    with pytest.raises(KeyringLocked, match="exactly 32 bytes"):
        LocalKeyring.create(path, KeyFile(short))


def test_passphrase_kek_refuses_a_key_file(tmp_path, path, ring):
    with pytest.raises(KeyringLocked, match="passphrase, not a key file"):
        LocalKeyring.open(path, KeyFile.generate(tmp_path / "k.bin"))


def test_short_passphrase_is_refused():
    with pytest.raises(ValueError, match="at least 12"):
        Passphrase("short", FAST)


def test_default_scrypt_cost_is_strong():
    p = Passphrase("correct horse battery staple")
    assert p.params.n >= 2**15 and p.params.r >= 8


def test_group_readable_file_is_refused(path, ring):
    os.chmod(path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        LocalKeyring.open(path, PASS)


def test_damaged_file_is_corrupt_not_garbage(path, ring):
    dek_id, _ = ring.get_or_create_dek("alice")
    state = _state(path)
    wrapped = bytearray(base64.b64decode(state["deks"][dek_id]["wrapped"]))
    wrapped[20] ^= 1
    state["deks"][dek_id]["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    path.write_text(json.dumps(state))
    with pytest.raises(KeyringCorrupt, match="does not unwrap"):
        LocalKeyring.open(path, PASS).get_dek(dek_id)
    path.write_text("not json")
    with pytest.raises(KeyringCorrupt):
        LocalKeyring.open(path, PASS)


def test_dek_wrap_is_bound_to_its_id(path, ring):
    a, _ = ring.get_or_create_dek("alice")
    b, _ = ring.get_or_create_dek("bob")
    state = _state(path)
    state["deks"][a]["wrapped"], state["deks"][b]["wrapped"] = state["deks"][b]["wrapped"], state["deks"][a]["wrapped"]
    path.write_text(json.dumps(state))
    with pytest.raises(KeyringCorrupt):
        LocalKeyring.open(path, PASS).get_dek(a)


def test_unknown_and_malformed_ids(ring):
    with pytest.raises(UnknownKey):
        ring.get_dek("dek_" + "a" * 26)
    with pytest.raises(UnknownKey, match="malformed"):
        ring.get_dek("../../etc/passwd")


# ----- erasure ----------------------------------------------------------------


def test_destroy_removes_the_key_from_file_and_cache(path, ring):
    dek_id, key = ring.get_or_create_dek("alice")
    before = path.read_bytes()
    wrapped = _state(path)["deks"][dek_id]["wrapped"]
    assert wrapped.encode() in before
    when = ring.destroy("alice")
    assert when.tzinfo is not None
    after = path.read_bytes()
    assert wrapped.encode() not in after
    assert dek_id not in _state(path)["deks"]
    assert dek_id not in ring._cache  # the plaintext copy is gone too
    with pytest.raises(KeyDestroyed) as info:
        ring.get_dek(dek_id)
    assert info.value.destroyed_at == when
    assert ring.is_destroyed(dek_id)
    assert ring.destroyed_at("alice") == when
    # Anyone with the keyring and passphrase, in a new process, gets nothing.
    with pytest.raises(KeyDestroyed):
        LocalKeyring.open(path, PASS).get_dek(dek_id)


def test_keys_at_hand_answer_only_from_memory_and_never_miss_a_destroy(path, ring):
    assert ring.dek_at_hand("alice") is None  # no key yet: making one writes the file
    dek = tuple(ring.get_or_create_dek("alice"))
    assert tuple(ring.dek_at_hand("alice")) == dek and ring.key_at_hand(dek[0]) == dek[1]
    with ring._lock:  # another thread holds the keyring: no waiting for it
        got = []
        t = threading.Thread(target=lambda: got.append((ring.dek_at_hand("alice"), ring.key_at_hand(dek[0]))))
        t.start()
        t.join()
        assert got == [(None, None)]
    LocalKeyring.open(path, PASS).get_or_create_dek("bob")  # another process changed the file
    assert ring.dek_at_hand("alice") is None and ring.key_at_hand(dek[0]) is None
    assert tuple(ring.get_or_create_dek("alice")) == dek  # the blocking call reloads it
    assert tuple(ring.dek_at_hand("alice")) == dek
    LocalKeyring.open(path, PASS).destroy("alice")
    assert ring.dek_at_hand("alice") is None  # changed file: never the stale cached key
    with pytest.raises(KeyDestroyed):
        ring.get_or_create_dek("alice")
    with pytest.raises(KeyDestroyed):
        ring.dek_at_hand("alice")
    with pytest.raises(KeyDestroyed):
        ring.key_at_hand(dek[0])
    with pytest.raises(UnknownKey):
        ring.key_at_hand("not-a-key-id")


def test_concurrent_first_writes_make_one_key(ring):
    results = []

    def work():
        results.append(ring.get_or_create_dek("alice").dek_id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


def test_cache_is_bounded(path):
    ring = LocalKeyring.create(path, PASS, cache_size=3)
    ids = [ring.get_or_create_dek(f"c{i}").dek_id for i in range(10)]
    assert len(ring._cache) == 3
    assert ring.get_dek(ids[0]) == LocalKeyring.open(path, PASS).get_dek(ids[0])


# ----- rotation ---------------------------------------------------------------


def test_rotation_rewraps_keeps_the_previous_kek_linked_until_finished(path, ring):
    keys = {c: ring.get_or_create_dek(c) for c in ("alice", "bob", "carol")}
    ring.destroy("carol")
    tag_before = ring.tagger().customer_tag("alice")
    old_state = _state(path)
    assert ring.rotate_kek(OTHER) == 2
    state = _state(path)
    assert sorted(state["kek"]["versions"]) == ["1", "2"]  # 1 is kept for the link only
    assert {d["kek"] for d in state["deks"].values()} == {2}
    assert state["index_key"]["kek"] == 2
    assert {k: state["kek"]["link"][k] for k in ("from", "to")} == {"from": 1, "to": 2}
    for dek_id in state["deks"]:
        assert state["deks"][dek_id]["wrapped"] != old_state["deks"][dek_id]["wrapped"]
    # The same DEKs (so every existing object still decrypts), the same tags, under either KEK until finished.
    for kek, unlocked_by in ((OTHER, 2), (PASS, 1)):
        reopened = LocalKeyring.open(path, kek)
        assert reopened.unlocked_by == unlocked_by
        for c in ("alice", "bob"):
            assert reopened.get_dek(keys[c].dek_id) == keys[c].key
        assert reopened.tagger().customer_tag("alice") == tag_before
        assert reopened.is_destroyed(keys["carol"].dek_id)
    # The rotating handle keeps working under the new KEK.
    assert ring.get_or_create_dek("dave").dek_id in _state(path)["deks"]
    assert _state(path)["deks"][ring.get_or_create_dek("dave").dek_id]["kek"] == 2

    assert ring.finish_rotation() == 1
    state = _state(path)
    assert list(state["kek"]["versions"]) == ["2"] and "link" not in state["kek"]
    assert ring.finish_rotation() is None  # nothing left to finish
    with pytest.raises(WrongPassphrase) as info:  # the old KEK opens nothing now: a clear error, no garbage
        LocalKeyring.open(path, PASS)
    assert str(info.value) == f"wrong passphrase for keyring {path}"
    assert LocalKeyring.open(path, OTHER).get_dek(keys["alice"].dek_id) == keys["alice"].key


def test_destroy_reaches_every_kek_across_the_link(path, ring):
    alice = ring.get_or_create_dek("alice")
    bob = ring.get_or_create_dek("bob")
    operator = LocalKeyring.open(path, PASS)
    operator.rotate_kek(OTHER)
    operator.destroy("alice")  # on the new KEK: the old handle loses the key too, cache included
    with pytest.raises(KeyDestroyed):
        ring.get_dek(alice.dek_id)
    ring.destroy("bob")  # on the old KEK through the link: gone for the new KEK too
    for handle in (operator, LocalKeyring.open(path, OTHER), LocalKeyring.open(path, PASS)):
        for dk in (alice, bob):
            with pytest.raises(KeyDestroyed):
                handle.get_dek(dk.dek_id)
    raw = path.read_text()
    assert alice.dek_id not in _state(path)["deks"] and bob.dek_id not in _state(path)["deks"]
    assert base64.b64encode(alice.key).decode() not in raw


def test_a_second_rotation_before_finishing_is_refused(path, ring, tmp_path):
    dek_id, key = ring.get_or_create_dek("alice")
    ring.rotate_kek(OTHER)
    before = path.read_bytes()
    with pytest.raises(RotationUnfinished, match="finish that rotation"):
        ring.rotate_kek(KeyFile.generate(tmp_path / "kek3.bin"))
    assert path.read_bytes() == before  # nothing written
    ring.finish_rotation()
    third = KeyFile(tmp_path / "kek3.bin")
    assert ring.rotate_kek(third) == 3
    assert sorted(_state(path)["kek"]["versions"]) == ["2", "3"]
    assert LocalKeyring.open(path, OTHER).get_dek(dek_id) == key  # 2 linked to 3
    assert LocalKeyring.open(path, third).get_dek(dek_id) == key
    with pytest.raises(WrongPassphrase):  # 1 is long gone
        LocalKeyring.open(path, PASS)


def test_rotation_to_a_key_file(tmp_path, path, ring):
    dek_id, key = ring.get_or_create_dek("alice")
    kf = KeyFile.generate(tmp_path / "kek.bin")
    ring.rotate_kek(kf)
    assert LocalKeyring.open(path, kf).get_dek(dek_id) == key
    # The previous KEK was a passphrase: it still opens through the link, and a wrong one says so.
    assert LocalKeyring.open(path, PASS).get_dek(dek_id) == key
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        LocalKeyring.open(path, Passphrase("not the passphrase at all", FAST))
    ring.finish_rotation()
    with pytest.raises(KeyringLocked, match="key file, not a passphrase"):
        LocalKeyring.open(path, PASS)


def test_a_tampered_link_is_corrupt_not_garbage(path, ring):
    ring.get_or_create_dek("alice")
    ring.rotate_kek(OTHER)
    state = _state(path)
    raw = bytearray(base64.b64decode(state["kek"]["link"]["wrapped"]))
    raw[20] ^= 1
    state["kek"]["link"]["wrapped"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(state))
    with pytest.raises(KeyringCorrupt, match="link from KEK version 1 does not unwrap"):
        LocalKeyring.open(path, PASS)
    LocalKeyring.open(path, OTHER).check()  # the new KEK does not depend on the link
    state["kek"]["link"]["to"] = 7
    path.write_text(json.dumps(state))
    with pytest.raises(KeyringCorrupt, match="is not a replicator-keyring/1 file"):
        LocalKeyring.open(path, OTHER)


def test_a_keyring_written_before_links_existed_opens_and_rotates(tmp_path):
    """The golden file was written by the keyring code before rotation links (see its .expected.json)."""
    golden = Path(__file__).parent / "golden"
    expected = json.loads((golden / "keyring_before_links.expected.json").read_text())
    path = tmp_path / "keyring.json"
    path.write_bytes((golden / "keyring_before_links.json").read_bytes())
    path.chmod(0o600)
    current = Passphrase(expected["passphrase"], FAST)
    ring = LocalKeyring.open(path, current)
    assert ring.unlocked_by == 2
    for customer, (dek_id, key) in expected["keys"].items():
        assert ring.get_dek(dek_id) == bytes.fromhex(key)
        assert ring.get_or_create_dek(customer).dek_id == dek_id
    for customer, dek_id in expected["erased"].items():
        assert ring.is_destroyed(dek_id) and ring.destroyed_at(customer) is not None
    assert {c: ring.tagger().customer_tag(c) for c in expected["tags"]} == expected["tags"]
    with pytest.raises(WrongPassphrase):  # rotated (old style, no link) away from this one
        LocalKeyring.open(path, Passphrase(expected["old_passphrase"], FAST))
    assert ring.finish_rotation() is None
    third = Passphrase("a third passphrase for the golden file", FAST)
    assert ring.rotate_kek(third) == 3
    assert LocalKeyring.open(path, current).get_dek(expected["keys"]["alice"][0]) == bytes.fromhex(
        expected["keys"]["alice"][1]
    )


def test_failed_write_leaves_the_old_file_and_no_temp(path, ring, monkeypatch):
    ring.get_or_create_dek("alice")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ring.rotate_kek(OTHER)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json", "keyring.json.lock"]
    assert LocalKeyring.open(path, PASS).get_or_create_dek("alice")


# ----- secrets stay out of sight ----------------------------------------------


def test_reprs_are_redacted(ring):
    dk = ring.get_or_create_dek("alice")
    for obj in (dk, ring, ring.tagger(), PASS):
        text = repr(obj)
        assert "redacted" in text
        assert dk.key.hex() not in text and repr(dk.key) not in text
    assert PASS.secret not in repr(PASS) and PASS.secret not in str(PASS)


def test_check_and_close(ring):
    ring.check()
    ring.close()
    assert not ring._cache
    with pytest.raises(KeyringLocked, match="closed"):
        ring.get_or_create_dek("alice")


def test_datakey_repr():
    assert repr(DataKey("dek_x", b"\x01" * 32, b"\x02" * 32)) == "DataKey(dek_id='dek_x', key=<redacted>)"


def test_a_dek_made_before_name_keys_gets_one_on_its_next_write_once(ring, path):
    dek = ring.get_or_create_dek("alice")
    doc = _state(path)
    del doc["deks"][dek.dek_id]["name_key"]  # as a keyring written before name keys holds it
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    old = LocalKeyring.open(path, PASS)
    with pytest.raises(UnknownKey, match="no name key"):  # no name was ever sealed under one
        old.get_name_key(dek.dek_id)
    assert old.dek_at_hand("alice") is None  # making it writes the file: not at hand
    again = old.get_or_create_dek("alice")
    assert (again.dek_id, again.key) == (dek.dek_id, dek.key) and len(again.name_key) == 32
    assert "name_key" in _state(path)["deks"][dek.dek_id]
    for handle in (old, LocalKeyring.open(path, PASS)):
        assert handle.get_name_key(dek.dek_id) == again.name_key
        assert handle.get_or_create_dek("alice").name_key == again.name_key
