"""keys.audit, keyed: a chain of HMACs under the audit key, which a file-level attacker cannot re-chain."""

from __future__ import annotations

import json
import os

import pytest

from keys.audit import AuditCorrupt, AuditKey, AuditLog, AuditUnavailable, export, verify
from tests.support.forgery import rechain

KEY = AuditKey.derive(b"\x01" * 32)
GUESS = AuditKey.derive(b"\x02" * 32)
CTAG = "a" * 32


def _fields(i: int) -> dict:
    return dict(principal=f"p{i}", action="read", outcome="allowed", customer_tag=CTAG, purpose="service")


def _write(path, n: int, key: AuditKey | None) -> None:
    with AuditLog.open(path, key) as log:
        for i in range(n):
            log.append(**_fields(i))


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "audit.log"


def test_a_keyed_log_carries_macs_and_verifies_only_under_its_key(path):
    _write(path, 5, KEY)
    records = [json.loads(line) for line in _lines(path)]
    assert all("mac" in r and "hash" not in r for r in records)
    assert [r["prev"] for r in records[1:]] == [r["mac"] for r in records[:-1]]
    good = verify(path, key=KEY, require_keyed=True)
    assert good.ok and good.records == 5 and good.keyed == 5 and good.unchecked == 0
    assert good.head is not None and good.head.hash == records[-1]["mac"]
    unkeyed = verify(path)  # the links alone, as health checks them between full verifies
    assert unkeyed.ok and unkeyed.unchecked == 5 and unkeyed.keyed == 0
    wrong = verify(path, key=GUESS)
    assert not wrong.ok and wrong.first_bad_line == 1 and GUESS.key_id in wrong.reason


def test_an_edited_log_rechained_with_a_guessed_key_is_found_at_the_edit(path):
    _write(path, 6, KEY)
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"principal":"p2"', b'"principal":"xx"')
    path.write_bytes(b"".join(rechain(lines, 2, GUESS._key)))
    assert verify(path).ok  # its links are whole: only the key tells
    result = verify(path, key=KEY)
    assert not result.ok and result.first_bad_line == 3 and result.records == 2
    assert "re-chained" in result.reason


def test_a_log_rechained_without_any_key_is_found(path):
    _write(path, 4, KEY)
    whole = rechain(_lines(path), 0, None)  # every record turned into a format-1 hash chain
    path.write_bytes(b"".join(whole))
    assert verify(path, key=KEY).ok  # an unkeyed log on its own still verifies (old logs must) ...
    result = verify(path, key=KEY, require_keyed=True)  # ... but not where the nodes hold the key
    assert not result.ok and result.first_bad_line == 1 and "without the audit key" in result.reason
    path.write_bytes(b"")
    _write(path, 3, KEY)
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:2] + rechain(lines, 2, None)[2:]))  # the last record downgraded
    result = verify(path, key=KEY)
    assert not result.ok and result.first_bad_line == 3 and "unkeyed record after keyed" in result.reason


def test_an_unkeyed_log_moves_to_the_keyed_format_and_anchors_its_old_part(path):
    _write(path, 3, None)
    assert verify(path).ok
    _write(path, 2, KEY)
    records = [json.loads(line) for line in _lines(path)]
    assert [("hash" in r, r["action"]) for r in records] == [
        (True, "read"),
        (True, "read"),
        (True, "read"),
        (False, "audit.keyed"),
        (False, "read"),
        (False, "read"),
    ]
    assert records[3]["prev"] == records[2]["hash"] and records[3]["outcome"] == KEY.key_id.replace("_", "-")
    result = verify(path, key=KEY, require_keyed=True)
    assert result.ok and result.records == 6 and result.keyed == 3
    lines = _lines(path)  # re-chain the old, unkeyed part after an edit: the first keyed MAC covers it
    lines[1] = lines[1].replace(b'"principal":"p1"', b'"principal":"zz"')
    path.write_bytes(b"".join(rechain(lines[:3], 1, None) + lines[3:]))
    result = verify(path, key=KEY)
    assert not result.ok and result.first_bad_line == 4 and "prev does not match" in result.reason


def test_a_keyed_log_needs_its_key_to_go_on(path):
    _write(path, 2, KEY)
    with pytest.raises(AuditUnavailable, match="keyed"):
        AuditLog.open(path)
    with pytest.raises(AuditCorrupt, match=GUESS.key_id):
        AuditLog.open(path, GUESS)
    with AuditLog.open(path, KEY) as log:
        assert log.append(**_fields(9)).seq == 3
    assert verify(path, key=KEY, require_keyed=True).records == 3


def test_export_verifies_under_the_key(path, tmp_path):
    _write(path, 3, KEY)
    out = tmp_path / "copy.log"
    out.write_bytes(b"".join(export(path, key=KEY, require_keyed=True)))
    assert verify(out, key=KEY, require_keyed=True).records == 3
    with pytest.raises(ValueError, match="line 1"):
        list(export(path, key=GUESS))


def test_the_audit_key_never_shows():
    secret = b"\x07" * 32
    key = AuditKey.derive(secret)
    assert key == AuditKey.derive(secret) and key != AuditKey.derive(b"\x08" * 32)
    assert key._key != secret  # derived, not the index key itself
    assert key._key.hex() not in repr(key) and "redacted" in repr(key) and key.key_id in repr(key)
    with pytest.raises(ValueError):
        AuditKey(os.urandom(16))
