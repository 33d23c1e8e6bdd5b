"""Keystone v3 for the Swift driver: a token and the object-store endpoint from a clouds.yaml cloud.

openstacksdk and keystoneauth are synchronous, so every call into them runs in
a worker thread; one lock makes concurrent 401s on one token renew it once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from openstack import exceptions as sdk_exc

from .._retry import RetryPolicy

_TOKEN_MARGIN = 300  # seconds: renew a token this long before it expires


class KeystoneAuth:
    """Token and endpoint handling, mixed into :class:`~regions.swift.SwiftRegion`."""

    cloud: str
    clouds_yaml: str | None
    retry: RetryPolicy

    def _init_auth(self) -> None:
        self._conn: Any = None  # openstack.connection.Connection, made in a thread on first use
        self._token: str | None = None
        self._endpoint = ""
        self._expires = 0.0
        self._auth_lock = asyncio.Lock()

    def _authenticate(self, renew: bool) -> tuple[str, str, float]:
        """(token, endpoint, expiry) from Keystone. Blocking: runs in a worker thread."""
        if self._conn is None:
            from openstack import connection
            from openstack.config import loader

            if self.clouds_yaml is not None:
                if not os.path.exists(self.clouds_yaml):
                    raise sdk_exc.ConfigException(f"{self.clouds_yaml} does not exist")
                secure = os.path.join(os.path.dirname(self.clouds_yaml), "secure.yaml")
                config = loader.OpenStackConfig(
                    config_files=[self.clouds_yaml], secure_files=[secure], load_envvars=False
                )
            else:
                config = loader.OpenStackConfig()
            # keystoneauth waits forever by default; our retry deadline cannot stop a thread.
            region = config.get_one(cloud=self.cloud, api_timeout=self.retry.timeout)
            self._conn = connection.Connection(config=region)
        session = self._conn.session
        if renew:
            session.invalidate()
        access = session.auth.get_access(session)  # renews by itself when close to expiry
        endpoint = self._conn.object_store.get_endpoint().rstrip("/")
        expires = access.expires.timestamp() if access.expires else time.time() + 3600
        return access.auth_token, endpoint, expires

    async def _login(self, stale: str | None = None) -> tuple[str, str]:
        """The token and endpoint to use; a new token if ``stale`` is still the current one."""
        async with self._auth_lock:  # concurrent 401s on one token renew it once
            expiring = time.time() > self._expires - _TOKEN_MARGIN
            if self._token is None or expiring or stale == self._token:
                self._token, self._endpoint, self._expires = await asyncio.to_thread(
                    self._authenticate, self._token is not None
                )
            assert self._token is not None
            return self._token, self._endpoint
