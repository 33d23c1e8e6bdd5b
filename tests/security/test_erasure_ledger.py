"""Account deletion survives a restored backup: the erasure ledger in both regions puts it back.

The promise: a customer erased on request stays erased. Restoring an old copy of the key records
(here the embedded default's keyring file) would bring their key back; a node started on it
re-applies the ledger before it takes traffic, records that in its audit log, and serves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import requests

from keys.audit import verify
from tests.support.served import Served

PATH = "v1/objects/alice/account/profile"


def test_a_restored_keyring_backup_does_not_undo_an_erasure(tmp_path):
    var = tmp_path / "var"
    served = Served(tmp_path, ["serve", "--var", str(var)]).start()
    try:
        auth = {"Authorization": f"Bearer {(var / 'dev-token').read_text().strip()}"}
        assert (
            requests.put(f"{served.url}/{PATH}", data=b"alice's profile", headers=auth, timeout=10).status_code == 201
        )
        shutil.copy2(var / "keyring.json", tmp_path / "keyring.backup")  # last night's backup
        assert requests.delete(f"{served.url}/v1/customers/alice", headers=auth, timeout=10).status_code == 202
    finally:
        served.stop()

    shutil.copy2(tmp_path / "keyring.backup", var / "keyring.json")  # the operator restores it
    restarted = Served(tmp_path, ["serve", "--var", str(var)]).start()
    try:
        url = f"{restarted.url}/{PATH}"
        read = requests.get(url, headers={**auth, "X-Purpose": "service"}, timeout=10)
        assert read.status_code in (404, 410), read.text  # erased: its objects gone, its key with them
        assert b"alice's profile" not in read.content
        write = requests.put(url, data=b"again", headers=auth, timeout=10)
        assert write.status_code == 410, write.text  # still erased: writes are refused
    finally:
        restarted.stop()
    records = [json.loads(line) for line in (var / "audit.log").read_text().splitlines()]
    assert [r["outcome"] for r in records if r.get("principal") == "erasure-ledger"] == ["reapplied"]
    assert verify(var / "audit.log").ok
    keyring = json.loads((var / "keyring.json").read_text())
    assert len(keyring["erased"]) == 1 and not keyring["customers"]  # the key left the file again


def test_a_read_streaming_when_the_customer_is_erased_is_cut_off(tmp_path):
    """Plaintext stops within ``KEY_RECHECK`` of the erasure, even for a read that began before it:
    the connection is aborted, never finished cleanly with a short body."""
    var = tmp_path / "var"
    served = Served(tmp_path, ["serve", "--var", str(var)]).start()
    try:
        auth = {"Authorization": f"Bearer {(var / 'dev-token').read_text().strip()}"}
        body = os.urandom(96 << 20)
        assert requests.put(f"{served.url}/{PATH}", data=body, headers=auth, timeout=60).status_code == 201
        got = 0
        with requests.get(
            f"{served.url}/{PATH}", headers={**auth, "X-Purpose": "service"}, stream=True, timeout=30
        ) as read:
            assert read.status_code == 200
            chunks = read.iter_content(1 << 16)
            got += len(next(chunks))
            erase = requests.delete(f"{served.url}/v1/customers/alice", headers=auth, timeout=10)
            assert erase.status_code == 202
            time.sleep(0.5)  # the socket buffers fill; the server's next key check finds it destroyed
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                for chunk in chunks:
                    got += len(chunk)
        assert got < len(body)
    finally:
        served.stop()
