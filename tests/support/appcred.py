"""Keystone application credentials made against the dev stack's Keystone, and clouds.yaml files for them.

An application credential belongs to a user and one project, holds some of
the user's roles there (``member``: what the replicator needs on its Swift
account), may expire, and its owner can delete it (revoke) at any time. It is
made here as the dev stack's customer user (cloud ``devstack``), the way an
operator makes one with ``openstack application credential create``, and
written into a clouds.yaml cloud with ``auth_type: v3applicationcredential``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from openstack import connection
from openstack.config import loader

CLOUD = """\
clouds:
  {cloud}:
    auth_type: v3applicationcredential
    auth:
      auth_url: {auth_url}
      application_credential_id: {id}
      application_credential_secret: {secret}
    region_name: RegionOne
    interface: public
    identity_api_version: 3
"""


@dataclass(frozen=True)
class AppCredential:
    id: str
    secret: str
    expires_at: datetime.datetime | None

    def __repr__(self) -> str:  # the secret stays out of test reports
        return f"AppCredential({self.id!r}, expires_at={self.expires_at})"


class AppCredentials:
    """Application credentials of the ``owner`` cloud's user on its project; ``delete_all`` cleans up."""

    def __init__(self, clouds_yaml: str, owner: str, keystone_url: str):
        config = loader.OpenStackConfig(config_files=[clouds_yaml], load_envvars=False)
        self.conn = connection.Connection(config=config.get_one(cloud=owner, api_timeout=10))
        self.keystone_url = keystone_url.rstrip("/")
        self.made: list[str] = []

    def _url(self, cred_id: str = "") -> str:
        base = f"{self.keystone_url}/users/{self.conn.current_user_id}/application_credentials"
        return f"{base}/{cred_id}" if cred_id else base

    def create(self, name: str, *, expires_in: float | None = None) -> AppCredential:
        expires_at = None
        body: dict = {"name": name, "roles": [{"name": "member"}]}
        if expires_in is not None:
            expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires_in)
            body["expires_at"] = expires_at.strftime("%Y-%m-%dT%H:%M:%S")
        resp = self.conn.session.post(self._url(), json={"application_credential": body})
        made = resp.json()["application_credential"]
        self.made.append(made["id"])
        return AppCredential(made["id"], made["secret"], expires_at)

    def delete(self, cred: AppCredential) -> None:
        """Revoke it: Keystone refuses it, and the tokens issued with it, from now on."""
        self.conn.session.delete(self._url(cred.id))
        self.made.remove(cred.id)

    def delete_named(self, prefix: str) -> None:
        """Revoke every credential of the user whose name starts with ``prefix`` (an earlier run's leftovers)."""
        for cred in self.conn.session.get(self._url()).json()["application_credentials"]:
            if cred["name"].startswith(prefix):
                self.conn.session.delete(self._url(cred["id"]), raise_exc=False)

    def delete_all(self) -> None:
        for cred_id in list(self.made):
            self.conn.session.delete(self._url(cred_id), raise_exc=False)
        self.made.clear()

    def write_cloud(self, path: Path, cred: AppCredential, cloud: str = "appcred") -> Path:
        """Write (atomically, as an operator should) a clouds.yaml holding one cloud for ``cred``."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(CLOUD.format(cloud=cloud, auth_url=self.keystone_url, id=cred.id, secret=cred.secret))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path
