"""The key-provider conformance suite: what every ``KeyProvider`` guarantees (``keys.provider``).

A subclass gives ``store``, an object with

* ``open(kek, create=True)``: a new handle on the same records (another
  process, or another node of a cluster);
* ``backup()`` and ``restore(snapshot)``: the records as an operator's
  backup would keep them, and put back (the erasure-ledger tests);
* ``close()``.

Two handles stand for two nodes: what one does, the other sees at its next
call (erasure at once, no cache to wait out).
"""

from __future__ import annotations

import base64
import threading

import pytest

from keys.audit import AuditKey, AuditLog, verify
from keys.keyring import RotationUnfinished
from keys.provider import (
    DataKey,
    KeyDestroyed,
    KeyProvider,
    KeyringLocked,
    Passphrase,
    ScryptParams,
    UnknownKey,
    WrongPassphrase,
)

FAST = ScryptParams.fast()
PASS = Passphrase("correct horse battery staple", FAST)
OTHER = Passphrase("a different passphrase entirely", FAST)
THIRD = Passphrase("yet another passphrase, the third", FAST)


class KeyProviderConformance:
    @pytest.fixture
    def node(self, store):
        return store.open(PASS)

    @pytest.fixture
    def peer(self, store, node):
        return store.open(PASS)

    def test_is_a_key_provider(self, node):
        assert isinstance(node, KeyProvider)

    def test_a_key_is_made_once_and_every_handle_gets_it(self, store, node, peer):
        dek = node.get_or_create_dek("alice")
        assert isinstance(dek, DataKey) and len(dek.key) == 32 and dek.dek_id.startswith("dek_")
        assert node.get_or_create_dek("alice").dek_id == dek.dek_id
        assert peer.get_or_create_dek("alice").key == dek.key
        assert store.open(PASS).get_dek(dek.dek_id) == dek.key
        assert node.get_or_create_dek("bob").dek_id != dek.dek_id

    def test_the_tags_are_the_same_on_every_handle(self, node, peer):
        assert node.tagger().customer_tag("alice") == peer.tagger().customer_tag("alice")

    def test_unknown_and_malformed_ids(self, node):
        with pytest.raises(UnknownKey):
            node.get_dek("dek_" + "a" * 26)
        with pytest.raises(UnknownKey, match="malformed"):
            node.get_dek("../../etc/passwd")
        assert not node.is_destroyed("dek_" + "a" * 26)

    def test_a_wrong_kek_is_a_clear_error(self, store, node):
        node.get_or_create_dek("alice")
        with pytest.raises(WrongPassphrase):
            store.open(OTHER)

    def test_first_writes_racing_on_two_handles_make_one_key(self, node, peer):
        ids = []

        def work(handle):
            ids.append(handle.get_or_create_dek("alice").dek_id)

        threads = [threading.Thread(target=work, args=(h,)) for h in (node, peer) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == 8 and len(set(ids)) == 1

    # ----- erasure ------------------------------------------------------------

    def test_destroy_reaches_every_handle_at_once(self, store, node, peer):
        dek_id, key = node.get_or_create_dek("alice")
        assert peer.get_dek(dek_id) == key  # cached there
        when = node.destroy("alice")
        assert when.tzinfo is not None
        for handle in (peer, node, store.open(PASS)):
            with pytest.raises(KeyDestroyed) as info:
                handle.get_dek(dek_id)
            assert info.value.destroyed_at == when
            with pytest.raises(KeyDestroyed):
                handle.get_or_create_dek("alice")
            assert _at_hand(handle, dek_id) is None  # never the cached key
            assert handle.is_destroyed(dek_id)
            assert handle.destroyed_at("alice") == when
            assert handle.destroyed_at_hand("alice") in (None, (when,))  # at hand, or "ask the store"

    def test_keys_at_hand_never_outlive_a_destroy_elsewhere(self, node, peer):
        dek = node.get_or_create_dek("alice")
        node.get_dek(dek.dek_id)
        peer.destroy("alice")
        assert _at_hand(node, dek.dek_id) is None
        with pytest.raises(KeyDestroyed):
            node.get_dek(dek.dek_id)

    def test_an_erased_customer_gets_no_key_until_reinstated(self, node, peer):
        old_id, _ = node.get_or_create_dek("alice")
        when = node.destroy("alice")
        with pytest.raises(KeyDestroyed) as info:
            peer.get_or_create_dek("alice")
        assert info.value.destroyed_at == when and "alice" not in str(info.value)
        peer.reinstate("alice")
        assert node.destroyed_at("alice") is None
        assert node.destroyed_at_hand("alice") in (None, (None,))
        new_id, _ = node.get_or_create_dek("alice")
        assert new_id != old_id
        assert peer.is_destroyed(old_id)  # the old generation stays dead
        with pytest.raises(KeyDestroyed):
            peer.get_dek(old_id)

    def test_a_read_gets_both_keys_in_one_answer_and_none_once_the_customer_is_erased(self, store, node, peer):
        dek = node.get_or_create_dek("alice")
        assert peer.keys_for_read("alice", dek.dek_id) == (dek.key, dek.name_key)
        assert peer.keys_for_read("alice", dek.dek_id) == (dek.key, dek.name_key)  # cached there now
        with pytest.raises(UnknownKey):
            node.keys_for_read("alice", "dek_" + "a" * 26)
        with pytest.raises(UnknownKey, match="malformed"):
            node.keys_for_read("alice", "../../etc/passwd")
        when = node.destroy("alice")
        for handle in (peer, node, store.open(PASS)):
            with pytest.raises(KeyDestroyed) as info:
                handle.keys_for_read("alice", dek.dek_id)
            assert info.value.destroyed_at == when
        node.destroy("carol")  # erased, whatever key id a read names
        with pytest.raises(KeyDestroyed):
            peer.keys_for_read("carol", "dek_" + "a" * 26)
        peer.reinstate("alice")  # back, but the old generation stays dead
        with pytest.raises(KeyDestroyed):
            node.keys_for_read("alice", dek.dek_id)

    def test_destroy_is_idempotent_and_works_without_a_key(self, node, peer):
        first = node.destroy("never-wrote")
        assert peer.destroy("never-wrote") == first
        with pytest.raises(KeyDestroyed):
            node.get_or_create_dek("never-wrote")

    def test_tombstone_names_the_destroyed_key(self, node):
        ctag = node.tagger().customer_tag("alice")
        assert node.tombstone(ctag) is None
        dek_id, _ = node.get_or_create_dek("alice")
        when = node.destroy("alice")
        tomb = node.tombstone(ctag)
        assert tomb is not None and (tomb.destroyed_at, tomb.dek_id) == (when, dek_id)

    # ----- the erasure ledger: a restored backup never brings a key back ------

    def test_reapply_undoes_what_a_restored_backup_brought_back(self, store, node):
        dek_id, key = node.get_or_create_dek("alice")
        bob = node.get_or_create_dek("bob")
        ctag = node.tagger().customer_tag("alice")
        backup = store.backup()
        node.destroy("alice")
        tomb = node.tombstone(ctag)
        store.restore(backup)
        restored = store.open(PASS)
        assert restored.get_dek(dek_id) == key  # what the ledger is for
        assert restored.reapply(ctag, tomb, still_erased=True) is True
        for handle in (restored, store.open(PASS)):
            with pytest.raises(KeyDestroyed):
                handle.get_dek(dek_id)
            with pytest.raises(KeyDestroyed):
                handle.get_or_create_dek("alice")
            assert handle.destroyed_at("alice") == tomb.destroyed_at
            assert handle.get_dek(bob.dek_id) == bob.key  # nobody else is touched
        assert restored.reapply(ctag, tomb, still_erased=True) is False  # already so: nothing to do

    def test_reapply_after_a_reinstate_keeps_the_old_key_dead_and_the_customer_live(self, store, node):
        old_id, _ = node.get_or_create_dek("alice")
        ctag = node.tagger().customer_tag("alice")
        backup = store.backup()
        node.destroy("alice")
        tomb = node.tombstone(ctag)
        node.reinstate("alice")
        store.restore(backup)
        restored = store.open(PASS)
        assert restored.reapply(ctag, tomb, still_erased=False) is True
        with pytest.raises(KeyDestroyed):
            restored.get_dek(old_id)
        assert restored.destroyed_at("alice") is None
        assert restored.get_or_create_dek("alice").dek_id != old_id

    # ----- rotation -----------------------------------------------------------

    def test_rotation_keeps_every_key_and_links_the_previous_kek_until_finished(self, store, node):
        keys = {c: node.get_or_create_dek(c) for c in ("alice", "bob", "carol")}
        node.destroy("carol")
        tag = node.tagger().customer_tag("alice")
        assert node.rotate_kek(OTHER) == 2
        for kek, by in ((OTHER, 2), (PASS, 1)):
            reopened = store.open(kek)
            assert reopened.unlocked_by == by
            for c in ("alice", "bob"):
                assert reopened.get_dek(keys[c].dek_id) == keys[c].key
            assert reopened.tagger().customer_tag("alice") == tag
            assert reopened.is_destroyed(keys["carol"].dek_id)
        dave = node.get_or_create_dek("dave")
        assert store.open(OTHER).get_dek(dave.dek_id) == dave.key
        assert node.finish_rotation() == 1
        assert node.finish_rotation() is None
        with pytest.raises(WrongPassphrase):
            store.open(PASS)
        assert store.open(OTHER).get_dek(keys["alice"].dek_id) == keys["alice"].key

    def test_a_running_handle_on_the_old_kek_keeps_serving_after_a_rotation_elsewhere(self, store, node):
        old = {c: node.get_or_create_dek(c) for c in ("alice", "bob")}
        unseen = store.open(PASS).get_or_create_dek("erin")  # never in ``node``'s memory
        operator = store.open(PASS)
        operator.rotate_kek(OTHER)
        for c, dk in old.items():
            assert node.get_or_create_dek(c).key == dk.key
        assert node.get_dek(unseen.dek_id) == unseen.key
        new = node.get_or_create_dek("frank")  # made after the rotation: under the newest KEK
        node.check()
        assert store.open(OTHER).get_dek(new.dek_id) == new.key
        operator.finish_rotation()
        assert node.get_dek(new.dek_id) == new.key and node.get_or_create_dek("grace")

    def test_destroy_reaches_every_kek_across_the_link(self, store, node):
        alice, bob = node.get_or_create_dek("alice"), node.get_or_create_dek("bob")
        operator = store.open(PASS)
        operator.rotate_kek(OTHER)
        operator.destroy("alice")
        node.destroy("bob")  # on the old KEK, through the link
        for handle in (node, operator, store.open(OTHER), store.open(PASS)):
            for dk in (alice, bob):
                with pytest.raises(KeyDestroyed):
                    handle.get_dek(dk.dek_id)

    def test_a_second_rotation_before_finishing_is_refused(self, store, node):
        dek_id, key = node.get_or_create_dek("alice")
        node.rotate_kek(OTHER)
        with pytest.raises(RotationUnfinished, match="finish that rotation"):
            store.open(OTHER).rotate_kek(THIRD)
        node.finish_rotation()
        assert node.rotate_kek(THIRD) == 3
        assert store.open(OTHER).get_dek(dek_id) == key  # 2 linked to 3
        assert store.open(THIRD).get_dek(dek_id) == key
        with pytest.raises(WrongPassphrase):
            store.open(PASS)

    def test_a_handle_that_missed_the_whole_rotation_is_locked_out_clearly(self, store, node):
        node.get_or_create_dek("alice")
        other = store.open(PASS)
        other.rotate_kek(OTHER)
        other.finish_rotation()
        with pytest.raises(KeyringLocked, match="re-keyed"):
            node.get_or_create_dek("bob")

    # ----- the name key: seals object names, apart from the DEK ---------------

    def test_a_name_key_is_made_once_with_the_dek_and_every_handle_gets_it(self, store, node, peer):
        dek = node.get_or_create_dek("alice")
        assert len(dek.name_key) == 32 and dek.name_key != dek.key
        assert node.get_or_create_dek("alice").name_key == dek.name_key
        assert peer.get_name_key(dek.dek_id) == dek.name_key
        assert store.open(PASS).get_name_key(dek.dek_id) == dek.name_key
        assert peer.get_or_create_dek("alice").name_key == dek.name_key
        assert node.get_or_create_dek("bob").name_key not in (dek.name_key, dek.key)
        with pytest.raises(UnknownKey):
            node.get_name_key("dek_" + "a" * 26)
        with pytest.raises(UnknownKey, match="malformed"):
            node.get_name_key("../../etc/passwd")

    def test_the_name_key_is_destroyed_with_the_customer_on_every_handle_at_once(self, store, node, peer):
        dek = node.get_or_create_dek("alice")
        bob = node.get_or_create_dek("bob")
        assert peer.get_name_key(dek.dek_id) == dek.name_key  # cached there
        when = node.destroy("alice")
        for handle in (peer, node, store.open(PASS)):
            with pytest.raises(KeyDestroyed) as info:
                handle.get_name_key(dek.dek_id)
            assert info.value.destroyed_at == when
            assert _name_at_hand(handle, dek.dek_id) is None  # never the cached key
            assert handle.get_name_key(bob.dek_id) == bob.name_key
        peer.reinstate("alice")
        again = node.get_or_create_dek("alice")  # a new generation: a new name key too
        assert again.name_key != dek.name_key and peer.get_name_key(again.dek_id) == again.name_key
        with pytest.raises(KeyDestroyed):
            peer.get_name_key(dek.dek_id)

    def test_reapply_destroys_the_name_key_a_restored_backup_brought_back(self, store, node):
        dek = node.get_or_create_dek("alice")
        ctag = node.tagger().customer_tag("alice")
        backup = store.backup()
        node.destroy("alice")
        tomb = node.tombstone(ctag)
        store.restore(backup)
        restored = store.open(PASS)
        assert restored.get_name_key(dek.dek_id) == dek.name_key
        assert restored.reapply(ctag, tomb, still_erased=True) is True
        for handle in (restored, store.open(PASS)):
            with pytest.raises(KeyDestroyed):
                handle.get_name_key(dek.dek_id)

    def test_name_keys_survive_a_rotation(self, store, node):
        keys = {c: node.get_or_create_dek(c) for c in ("alice", "bob")}
        node.rotate_kek(OTHER)
        for kek in (OTHER, PASS):  # PASS through the link
            for dk in keys.values():
                assert store.open(kek).get_name_key(dk.dek_id) == dk.name_key
        node.finish_rotation()
        reopened = store.open(OTHER)
        for c, dk in keys.items():
            assert reopened.get_name_key(dk.dek_id) == dk.name_key
            assert reopened.get_or_create_dek(c).name_key == dk.name_key

    def test_name_keys_are_never_stored_or_shown_in_clear(self, store, node):
        dek = node.get_or_create_dek("alice")
        assert dek.name_key.hex() not in repr(dek) and dek.name_key.hex() not in repr(node)
        snapshot = store.backup()
        stored = snapshot if isinstance(snapshot, bytes) else repr(snapshot).encode()
        secret = dek.name_key
        for form in (secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
            assert form not in stored

    # ----- the audit key ------------------------------------------------------

    def test_the_audit_key_is_one_for_every_handle_and_survives_a_rotation(self, store, node, peer, tmp_path):
        key = node.audit_key()
        assert isinstance(key, AuditKey) and peer.audit_key() == key
        log = tmp_path / "audit.log"
        with AuditLog.open(log, key) as writer:  # a chain one node keys, every other node verifies
            writer.append(principal="web", action="read", outcome="allowed")
        assert verify(log, key=peer.audit_key(), require_keyed=True).keyed == 1
        node.rotate_kek(OTHER)
        node.finish_rotation()
        assert store.open(OTHER).audit_key() == key

    def test_the_audit_key_is_never_stored_or_shown_in_clear(self, store, node):
        key = node.audit_key()
        secret = key._key
        assert secret.hex() not in repr(key) and secret.hex() not in repr(node)
        snapshot = store.backup()
        stored = snapshot if isinstance(snapshot, bytes) else repr(snapshot).encode()
        for form in (secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
            assert form not in stored

    # ----- secrets and lifecycle ----------------------------------------------

    def test_reprs_are_redacted(self, node):
        dek = node.get_or_create_dek("alice")
        assert dek.key.hex() not in repr(node) and "alice" not in repr(node)
        assert "redacted" in repr(dek)

    def test_check_and_close(self, store):
        handle = store.open(PASS)
        handle.check()
        dek_id = handle.get_or_create_dek("alice").dek_id
        handle.close()
        with pytest.raises(KeyringLocked):
            handle.get_dek(dek_id)


def _name_at_hand(handle, dek_id):
    try:
        return handle.name_key_at_hand(dek_id)
    except KeyDestroyed:
        return None


def _at_hand(handle, dek_id):
    """What ``key_at_hand`` gives without waiting; a ``KeyDestroyed`` is as good as nothing."""
    try:
        return handle.key_at_hand(dek_id)
    except KeyDestroyed:
        return None
