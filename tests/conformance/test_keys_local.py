"""The local keyring file through the key-provider conformance suite (file specifics: tests/unit/keys/test_keyring.py)."""

import os

import pytest

from keys.keyring import LocalKeyring

from .keys_suite import KeyProviderConformance


class _Files:
    def __init__(self, path):
        self.path = path
        self.handles = []

    def open(self, kek, create=True):
        handle = LocalKeyring.open(self.path, kek, create=create)
        self.handles.append(handle)
        return handle

    def backup(self):
        return self.path.read_bytes()

    def restore(self, snapshot):
        tmp = self.path.with_name("restored.tmp")
        tmp.write_bytes(snapshot)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def close(self):
        for handle in self.handles:
            handle.close()


class TestLocalKeyring(KeyProviderConformance):
    @pytest.fixture
    def store(self, tmp_path):
        files = _Files(tmp_path / "keyring.json")
        yield files
        files.close()
