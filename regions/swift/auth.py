"""Keystone v3 for the Swift driver: a token and the object-store endpoint from a clouds.yaml cloud.

openstacksdk and keystoneauth are synchronous, so every call into them runs in
a worker thread; one lock makes concurrent 401s on one token renew it once.

The cloud's credential is whatever its ``auth_type`` says: a password
(``password``, the default) or a Keystone application credential
(``v3applicationcredential``: restricted to its roles on one project,
expiring, revocable by its owner without touching the password). Its tokens
expire no later than the application credential itself.

Rotation without a restart: the clouds.yaml (and its ``secure.yaml``) is
looked at every ``CREDENTIAL_LOOK`` seconds; when it changed, the next request
authenticates with what it now says, so an operator writes the new
credential, waits that long, then revokes the old one. A credential that
Keystone refuses (wrong, expired, revoked) is :class:`PermissionDenied`, and
the file is read again at the next attempt.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import urlsplit

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc

from .._retry import RetryPolicy
from ..base import PermissionDenied

_TOKEN_MARGIN = 300  # seconds: renew a token this long before it expires
CREDENTIAL_LOOK = 5.0  # seconds between two looks at the clouds.yaml for a rotated credential


def openstack_config(clouds_yaml: str | None) -> Any:
    """openstacksdk's reader of ``clouds_yaml`` (and the ``secure.yaml`` beside it), or, without one,
    of its own search path and the ``OS_*`` variables. Raises ConfigException for a missing file."""
    from openstack.config import loader

    if clouds_yaml is None:
        return loader.OpenStackConfig()
    if not os.path.exists(clouds_yaml):
        raise sdk_exc.ConfigException(f"{clouds_yaml} does not exist")
    secure = os.path.join(os.path.dirname(clouds_yaml), "secure.yaml")
    return loader.OpenStackConfig(config_files=[clouds_yaml], secure_files=[secure], load_envvars=False)


def cloud_place(cloud: str, clouds_yaml: str | None) -> tuple[str | None, str | None]:
    """The Keystone region name and the auth URL's host that a clouds.yaml cloud names (None for what
    it does not), read without authenticating: where the region is, for the residency check.
    Raises openstacksdk's ConfigException for a missing file or cloud."""
    region = openstack_config(clouds_yaml).get_one(cloud=cloud)
    auth_url = (region.config.get("auth") or {}).get("auth_url")
    host = urlsplit(auth_url).hostname if isinstance(auth_url, str) else None
    return region.region_name or None, host


class KeystoneAuth:
    """Token and endpoint handling, mixed into :class:`~regions.swift.SwiftRegion`."""

    name: str
    cloud: str
    clouds_yaml: str | None
    retry: RetryPolicy

    def _init_auth(self) -> None:
        self._conn: Any = None  # openstack.connection.Connection, made in a thread on first use
        self._token: str | None = None
        self._endpoint = ""
        self._expires = 0.0
        self._auth_lock = asyncio.Lock()
        self._files: list[str] = []  # the clouds.yaml (and secure.yaml) the connection was made from
        self._stamp: list[tuple[int, int] | None] = []
        self._next_look = 0.0

    @staticmethod
    def _stamp_of(files: list[str]) -> list[tuple[int, int] | None]:
        stamps: list[tuple[int, int] | None] = []
        for f in files:
            try:
                st = os.stat(f)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size))
        return stamps

    def _rotated(self) -> bool:
        """Whether the clouds.yaml changed since the connection was made (looked at every CREDENTIAL_LOOK s)."""
        now = time.monotonic()
        if not self._files or now < self._next_look:
            return False
        self._next_look = now + CREDENTIAL_LOOK
        return self._stamp_of(self._files) != self._stamp

    def _authenticate(self, renew: bool) -> tuple[str, str, float]:
        """(token, endpoint, expiry) from Keystone. Blocking: runs in a worker thread."""
        if self._conn is not None and self._stamp_of(self._files) != self._stamp:
            self._conn = None  # the credential was rotated: read the file again
        if self._conn is None:
            from openstack import connection

            config = openstack_config(self.clouds_yaml)
            # keystoneauth waits forever by default; our retry deadline cannot stop a thread.
            files = [f for f in (config.config_filename, getattr(config, "secure_config_filename", None)) if f]
            stamp = self._stamp_of(files)
            region = config.get_one(cloud=self.cloud, api_timeout=self.retry.timeout)
            self._conn = connection.Connection(config=region)
            self._files, self._stamp = files, stamp
        session = self._conn.session
        if renew:
            session.invalidate()
        try:
            access = session.auth.get_access(session)  # renews by itself when close to expiry
        except (ksa_exc.Unauthorized, ksa_exc.NotFound) as e:
            # 401: a wrong password or secret, an expired application credential; 404 ("Could not find
            # Application Credential"): a revoked (deleted) one. Not a missing object either way.
            self._conn = None  # the next attempt reads the clouds.yaml again
            raise PermissionDenied(
                f"Keystone refused the credentials of cloud {self.cloud!r} (HTTP {e.http_status}): a wrong "
                "password, or an application credential that expired or was revoked",
                region=self.name,
            ) from e
        endpoint = self._conn.object_store.get_endpoint().rstrip("/")
        expires = access.expires.timestamp() if access.expires else time.time() + 3600
        return access.auth_token, endpoint, expires

    async def _login(self, stale: str | None = None) -> tuple[str, str]:
        """The token and endpoint to use; a new token if ``stale`` is still the current one."""
        async with self._auth_lock:  # concurrent 401s on one token renew it once
            expiring = time.time() > self._expires - _TOKEN_MARGIN
            if self._token is None or expiring or stale == self._token or self._rotated():
                self._token, self._endpoint, self._expires = await asyncio.to_thread(
                    self._authenticate, self._token is not None
                )
            assert self._token is not None
            return self._token, self._endpoint
