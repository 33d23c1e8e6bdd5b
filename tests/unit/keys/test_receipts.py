"""keys.receipts: an erasure receipt signed under the deployment key verifies offline; each change fails."""

from __future__ import annotations

import base64
import json
import os

import pytest

from keys import receipts

FIELDS = {
    "erasure": "er_" + "ab" * 12,
    "customer_tag": "a" * 32,
    "state": "done",
    "key_destroyed_at": "2026-12-06T15:00:00+00:00",
    "regions": {"ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 3, "remaining": 0}},
    "issued_at": "2026-12-06T15:00:01Z",
}


@pytest.fixture
def key(tmp_path):
    return receipts.generate(tmp_path / "signing.pem")


def test_a_signed_receipt_verifies_under_its_public_key_after_a_json_round_trip(key, tmp_path):
    signed = key.sign(FIELDS)
    assert signed["signature"]["alg"] == "Ed25519" and signed["signature"]["key_id"] == key.key_id
    again = json.loads(json.dumps(signed, indent=1))  # as `replicator erase` prints it: order and spaces change
    public = receipts.load_public(tmp_path / "signing.pem.pub")
    assert receipts.verify(again, public) == receipts.Checked(True, "ok", key.key_id)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(state="running"),
        lambda r: r["regions"]["jp"].update(remaining=1),
        lambda r: r.update(customer_tag="b" * 32),
        lambda r: r.update(extra="added"),
        lambda r: r.pop("issued_at"),
    ],
)
def test_a_changed_added_or_removed_field_fails(key, change):
    signed = json.loads(json.dumps(key.sign(FIELDS)))
    change(signed)
    checked = receipts.verify(signed, key.public)
    assert not checked.ok and "a field was changed" in checked.reason


def test_a_wrong_key_a_truncated_signature_and_no_signature_each_fail(key, tmp_path):
    signed = key.sign(FIELDS)
    other = receipts.generate(tmp_path / "other.pem")
    checked = receipts.verify(signed, other.public)
    assert (
        not checked.ok and f"signed by key {key.key_id}, not by the public key given ({other.key_id})" in checked.reason
    )
    # A receipt re-signed by another key but claiming ours fails the signature itself.
    forged = {**other.sign(FIELDS), "signature": {**other.sign(FIELDS)["signature"], "key_id": key.key_id}}
    assert "a field was changed" in receipts.verify(forged, key.public).reason
    short = {**signed, "signature": {**signed["signature"], "value": signed["signature"]["value"][:-4]}}
    assert "bytes, not 64 (truncated?)" in receipts.verify(short, key.public).reason
    raw = bytearray(base64.urlsafe_b64decode(signed["signature"]["value"] + "=="))
    raw[0] ^= 1
    flipped = {**signed, "signature": {**signed["signature"], "value": base64.urlsafe_b64encode(raw).decode()}}
    assert not receipts.verify(flipped, key.public).ok
    assert "not signed" in receipts.verify(FIELDS, key.public).reason
    assert "not a JSON object" in receipts.verify([1], key.public).reason


def test_the_signing_key_file_must_be_private_and_ed25519_and_is_never_shown(key, tmp_path):
    path = tmp_path / "signing.pem"
    assert receipts.SigningKey.load(path).key_id == key.key_id
    for mode in (0o644, 0o660, 0o604):  # others may read; the group may write; others may read
        os.chmod(path, mode)
        with pytest.raises(receipts.ReceiptKeyError, match=rf"mode 0{mode:o}: make it readable by its owner only"):
            receipts.SigningKey.load(path)
    os.chmod(path, 0o440)  # a Kubernetes secret volume under the pod's own fsGroup
    assert receipts.SigningKey.load(path).key_id == key.key_id
    os.chmod(path, 0o600)
    with pytest.raises(FileExistsError):
        receipts.generate(path)  # never over an existing key
    pem = path.read_bytes()
    assert b"PRIVATE" not in repr(key).encode() and "redacted" in repr(key)
    (tmp_path / "junk.pem").write_bytes(b"junk")
    os.chmod(tmp_path / "junk.pem", 0o600)
    with pytest.raises(receipts.ReceiptKeyError, match="not an unencrypted PEM private key") as caught:
        receipts.SigningKey.load(tmp_path / "junk.pem")
    assert pem.decode() not in str(caught.value)
    with pytest.raises(receipts.ReceiptKeyError, match="not a PEM public key"):
        receipts.load_public(tmp_path / "junk.pem")


def test_the_canonical_encoding_is_sorted_compact_ascii_and_refuses_floats():
    assert receipts.canonical({"b": 1, "a": {"d": "é", "c": 2}}) == (
        receipts.CONTEXT + b'{"a":{"c":2,"d":"\\u00e9"},"b":1}'
    )
    with pytest.raises(ValueError, match="not floats"):
        receipts.canonical({"a": 1.5})
