"""The dev stack's Barbican as tests reach it: the test KEK `up` made, and secrets a test makes and removes.

``Barbican`` names the KEK by reference, as a config does (the secret's URL, a cloud of the stack's
clouds.yaml); ``create`` stores a payload of the test's choosing (another KEK, a short one) with
the same user, and everything it made is deleted by ``close``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from pathlib import Path

from keys import BarbicanKek


class Barbican:
    def __init__(self, url: str, secret: str, cloud: str, clouds_yaml: str) -> None:
        self.url = url.rstrip("/")
        self.secret = secret  # the test KEK's reference
        self.cloud = cloud
        self.clouds_yaml = Path(clouds_yaml)
        self._made: list[str] = []
        self._session = None

    def kek(self, ref: str | None = None, cloud: str | None = None) -> BarbicanKek:
        """The KEK at ``ref`` (default: the stack's test KEK), read as ``cloud`` (default: the KEK's reader)."""
        return BarbicanKek(ref or self.secret, cloud=cloud or self.cloud, clouds_yaml=self.clouds_yaml)

    def missing_ref(self) -> str:
        return f"{self.url}/v1/secrets/{uuid.uuid4()}"

    def _keystone(self):
        if self._session is None:
            from openstack.config import loader

            config = loader.OpenStackConfig(config_files=[str(self.clouds_yaml)], load_envvars=False)
            self._session = config.get_one(cloud=self.cloud, api_timeout=10).get_session()
        return self._session

    def create(self, payload: bytes | None = None, name: str = "replicator-test") -> str:
        """A new secret holding ``payload`` (32 random bytes unless given); its reference."""
        body = {
            "name": name,
            "secret_type": "symmetric",
            "algorithm": "aes",
            "bit_length": 8 * len(payload) if payload else 256,
            "payload": base64.b64encode(payload or os.urandom(32)).decode(),
            "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64",
        }
        resp = self._keystone().post(f"{self.url}/v1/secrets", json=body, raise_exc=False, log=False)
        assert resp.status_code == 201, (resp.status_code, resp.text[:300])
        ref = resp.json()["secret_ref"]
        self._made.append(ref)
        return ref

    def close(self) -> None:
        for ref in self._made:
            with contextlib.suppress(Exception):  # a test that failed with Barbican stopped: leave it
                self._keystone().delete(ref, raise_exc=False)
        self._made.clear()
