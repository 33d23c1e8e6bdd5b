"""A KEK held by OpenStack Barbican: the 32-byte payload of one secret, fetched into memory.

The secret is named by its reference, ``https://HOST[:PORT]/…/v1/secrets/<uuid>``, and the
Keystone credentials by reference too: a clouds.yaml cloud (and optionally the file), or, without
a cloud, the ``OS_*`` environment variables; openstacksdk's config loader turns either into a
keystoneauth1 session, which keeps the token and renews it.

The payload is fetched with ``Accept: application/octet-stream`` into memory only. It is never
written anywhere, keystoneauth's request log is off for that request, and it is in no ``repr`` and
no message: errors (``KeyServiceError``) name the secret's reference and what failed, an HTTP
status or the kind of connection error, never the key or the credentials. The key travels over
the network, so a reference must be ``https`` unless the host is the loopback.

``probe`` GETs the secret's metadata, not its payload: the readiness check of a process that
already holds the KEK (the key service answers, and still has the secret for this user).

Synchronous, as keystoneauth1 is: callers on an event loop use a thread.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keys.provider import KEY_BYTES, KeyringLocked, KeyServiceError, ServiceKek

DEFAULT_TIMEOUT = 10.0  # seconds for one request to Keystone or Barbican
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_SECRET_PATH = re.compile(r"^(/[^?#]*)?/v1/secrets/[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def check_ref(ref: str) -> str:
    """``ref`` if it is a Barbican secret reference this module will send a token to; else
    ``ValueError`` (the message states the rule, not the value: a mistyped URL may hold a password)."""
    rule = "a Barbican secret reference is https://HOST[:PORT]/v1/secrets/<uuid> (http only on the loopback)"
    try:
        url = urlsplit(ref)
        host = url.hostname
        url.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValueError(rule) from None
    if (
        not host
        or url.username is not None
        or url.password is not None
        or url.query
        or url.fragment
        or not _SECRET_PATH.match(url.path)
        or url.scheme not in ("https", "http")
        or (url.scheme == "http" and host not in _LOOPBACK)
    ):
        raise ValueError(rule)
    return ref


class BarbicanKek(ServiceKek):
    """The KEK in Barbican secret ``secret_ref``, read with the Keystone credentials of ``cloud``
    (a clouds.yaml cloud; ``clouds_yaml`` names the file, else openstacksdk's search path) or, when
    ``cloud`` is None, of the ``OS_*`` environment variables. Nothing is contacted until
    ``fetch`` or ``probe``."""

    kind = "barbican"

    def __init__(
        self,
        secret_ref: str,
        *,
        cloud: str | None = None,
        clouds_yaml: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if clouds_yaml is not None and cloud is None:
            raise ValueError("a clouds.yaml path goes with a cloud name")
        self._ref = check_ref(secret_ref)
        self.cloud = cloud
        self.clouds_yaml = None if clouds_yaml is None else Path(clouds_yaml)
        self.timeout = timeout
        self._session: Any = None  # keystoneauth1.session.Session, made on first use
        self._lock = threading.Lock()

    @property
    def ref(self) -> str:
        return self._ref

    def __repr__(self) -> str:
        return f"BarbicanKek({self._ref!r}, cloud={self.cloud!r}, clouds_yaml={self.clouds_yaml!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BarbicanKek) and (other._ref, other.cloud, other.clouds_yaml) == (
            self._ref,
            self.cloud,
            self.clouds_yaml,
        )

    def __hash__(self) -> int:
        return hash((self._ref, self.cloud, self.clouds_yaml))

    # ----- ServiceKek ---------------------------------------------------------

    def fetch(self) -> bytes:
        response = self._get(self._ref + "/payload", "application/octet-stream", self.timeout)
        payload = response.content
        if not isinstance(payload, bytes) or len(payload) != KEY_BYTES:
            size = len(payload) if isinstance(payload, bytes) else 0
            raise KeyringLocked(f"Barbican secret {self._ref} holds {size} bytes, not a {KEY_BYTES}-byte KEK")
        return payload

    def probe(self, timeout: float | None = None) -> None:
        self._get(self._ref, "application/json", self.timeout if timeout is None else timeout)

    # ----- internals ----------------------------------------------------------

    def _fail(self, reason: str, status: int | None = None) -> KeyServiceError:
        return KeyServiceError(self._ref, reason, status, service="Barbican")

    def _get(self, url: str, accept: str, timeout: float) -> Any:
        """The 200 response to an authenticated GET of ``url``; ``KeyServiceError`` otherwise."""
        from keystoneauth1 import exceptions as ks_exc

        session = self._keystone()
        try:
            session.get_token()  # cached; asks Keystone only for the first token or a renewal
        except ks_exc.HttpError as e:
            raise self._fail(f"Keystone refused the credentials of {self._whose()} (HTTP {e.http_status})") from None
        except (ks_exc.ConnectionError, ks_exc.DiscoveryFailure) as e:
            raise self._fail(f"no answer from Keystone for {self._whose()} ({type(e).__name__})") from None
        except ks_exc.ClientException as e:  # a setting missing from the cloud, an auth plugin error
            raise self._fail(f"Keystone authentication failed for {self._whose()} ({type(e).__name__})") from None
        try:
            # log=False: keystoneauth's debug log would hold the payload; redirect=False: the token
            # goes to the named service only. A 401 re-authenticates once (allow_reauth).
            response = session.get(
                url, headers={"Accept": accept}, raise_exc=False, log=False, redirect=False, timeout=timeout
            )
        except ks_exc.ClientException as e:
            raise self._fail(f"no answer from the key service ({type(e).__name__})") from None
        status = int(response.status_code)
        if status == 200:
            return response
        reason = {
            401: "the key service refused the token",
            403: f"access denied to the user of {self._whose()}",
            404: "no such secret",
        }.get(status, "the key service failed")
        raise self._fail(f"{reason} (HTTP {status})", status)

    def _whose(self) -> str:
        return f"cloud {self.cloud!r}" if self.cloud is not None else "the OS_* environment variables"

    def _keystone(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._open_session()
            return self._session

    def _open_session(self) -> Any:
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as sdk_exc
        from openstack.config import loader

        try:
            if self.cloud is None:
                config = loader.OpenStackConfig(load_yaml_config=False, load_envvars=True)
            elif self.clouds_yaml is not None:
                if not self.clouds_yaml.is_file():
                    raise self._fail(f"clouds.yaml {self.clouds_yaml} does not exist")
                secure = self.clouds_yaml.with_name("secure.yaml")
                config = loader.OpenStackConfig(
                    config_files=[str(self.clouds_yaml)], secure_files=[str(secure)], load_envvars=False
                )
            else:
                config = loader.OpenStackConfig(load_envvars=False)
            region = config.get_one(cloud=self.cloud, api_timeout=self.timeout)
            return region.get_session()
        except (sdk_exc.ConfigException, ks_exc.ClientException, KeyError, ValueError) as e:
            # These messages name the cloud or the missing setting, never a value
            raise self._fail(f"no Keystone credentials from {self._whose()} ({str(e)[:200]})") from None
