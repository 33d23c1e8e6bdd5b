"""Microsoft Entra ID tokens for the Azure driver: which azure-identity credential, and a guard on expiry.

A storage account can be reached with its account key (a secret that never
expires, for the whole account) or with OAuth tokens from Entra ID: short
(about an hour), scoped by role assignments (``Storage Blob Data
Contributor`` on one container), and issued to an identity instead of
copied around. azure-identity gets and renews them; the driver's
``BlobServiceClient`` asks for one before a request when its token is close
to expiry (azure-core's ``BearerTokenCredentialPolicy``).

:func:`entra_credential` builds the credential one kind names:

- ``workload-identity``: a Kubernetes service account federated with an
  Entra application (AKS workload identity; the webhook sets
  ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID`` and ``AZURE_FEDERATED_TOKEN_FILE``,
  and the kubelet rotates that file; it is read again at every renewal).
- ``managed-identity``: the VM's or App Service's identity (a user-assigned
  one by ``client_id``).
- ``service-principal``: an application's client secret, read from a file
  at every renewal, so a rotated secret is used without a restart.
- ``default``: azure-identity's ``DefaultAzureCredential`` chain
  (environment, workload identity, managed identity, Azure CLI...).

:class:`CheckedCredential` wraps any of them: a token that has already
expired when it is handed out is refused here, with the credential's kind
and the expiry in the message, instead of a bare 401 from the store.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

from ..base import PermissionDenied

EntraKind = Literal["default", "workload-identity", "managed-identity", "service-principal"]
ENTRA_KINDS: tuple[EntraKind, ...] = ("default", "workload-identity", "managed-identity", "service-principal")
STORAGE_SCOPE = "https://storage.azure.com/.default"


class CheckedCredential(AsyncTokenCredential):
    """``inner``, but a token already expired when it is handed out raises :class:`PermissionDenied`."""

    def __init__(self, inner: AsyncTokenCredential, *, kind: str, region: str) -> None:
        self.inner = inner
        self.kind = kind
        self.region = region

    def __repr__(self) -> str:
        return f"CheckedCredential({self.kind!r})"

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        token = await self.inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs)
        self._check(token.expires_on)
        return token

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """What azure-core asks first: it keeps the inner credential's ``refresh_on`` hint (a managed
        identity's day-long token is renewed at half-life, not five minutes before its end)."""
        if hasattr(self.inner, "get_token_info"):  # azure-core's own test for the newer protocol
            info = await cast(AsyncSupportsTokenInfo, self.inner).get_token_info(*scopes, options=options)
        else:
            opts = options or {}
            token = await self.inner.get_token(
                *scopes,
                claims=opts.get("claims"),
                tenant_id=opts.get("tenant_id"),
                enable_cae=opts.get("enable_cae", False),
            )
            info = AccessTokenInfo(token.token, token.expires_on)
        self._check(info.expires_on)
        return info

    def _check(self, expires_on: int) -> None:
        if expires_on <= time.time():
            at = datetime.fromtimestamp(expires_on, UTC).isoformat(timespec="seconds")
            raise PermissionDenied(
                f"the Entra ID token from the {self.kind} credential expired at {at}: "
                "the identity's token source is stale (a federated token file no longer renewed, a clock off)",
                region=self.region,
            )

    async def close(self) -> None:
        await self.inner.close()

    async def __aexit__(self, *args: Any) -> None:
        await self.close()


class _SecretFileCredential(AsyncTokenCredential):
    """A service principal whose client secret is read from a file, again whenever the file changes."""

    def __init__(self, tenant_id: str, client_id: str, secret_file: Path, **options: Any) -> None:
        self._tenant_id, self._client_id, self._file = tenant_id, client_id, secret_file
        self._options = options
        self._stamp: tuple[int, int] | None = None
        self._inner: AsyncTokenCredential | None = None

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        from azure.identity.aio import ClientSecretCredential

        st = os.stat(self._file)
        if self._inner is None or self._stamp != (st.st_mtime_ns, st.st_size):
            secret = self._file.read_text(encoding="utf-8").strip()
            if not secret:
                raise PermissionDenied(f"the client secret file {self._file} is empty")
            if self._inner is not None:
                await self._inner.close()
            self._inner = ClientSecretCredential(self._tenant_id, self._client_id, secret, **self._options)
            self._stamp = (st.st_mtime_ns, st.st_size)
        return await self._inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs)

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    async def __aexit__(self, *args: Any) -> None:
        await self.close()


def entra_credential(
    kind: EntraKind,
    *,
    tenant_id: str | None = None,
    client_id: str | None = None,
    client_secret_file: Path | None = None,
    token_file: Path | None = None,
    authority: str | None = None,
    ca_file: str | None = None,
) -> AsyncTokenCredential:
    """The azure-identity credential ``kind`` names (see the module docstring). ``authority`` is the
    Entra host of a sovereign cloud (default: azure-identity's, ``login.microsoftonline.com``);
    ``ca_file`` a private CA to trust instead of the system's (a TLS-inspecting proxy).
    Nothing is contacted until the first token is asked for."""
    from azure.identity import aio

    transport: dict[str, Any] = {"connection_verify": ca_file} if ca_file else {}
    options: dict[str, Any] = {"authority": authority, **transport} if authority else dict(transport)
    if kind == "default":
        return aio.DefaultAzureCredential(
            **options, managed_identity_client_id=client_id, workload_identity_client_id=client_id
        )
    if kind == "managed-identity":  # the platform's own endpoint: no authority
        return aio.ManagedIdentityCredential(client_id=client_id, **transport)
    if kind == "workload-identity":
        return aio.WorkloadIdentityCredential(
            tenant_id=tenant_id,
            client_id=client_id,
            token_file_path=os.fspath(token_file) if token_file else None,
            **options,
        )
    if kind == "service-principal":
        if not (tenant_id and client_id and client_secret_file):
            raise ValueError("a service principal needs tenant_id, client_id and client_secret_file")
        return _SecretFileCredential(tenant_id, client_id, client_secret_file, **options)
    raise ValueError(f"unknown Entra ID credential {kind!r}: one of {', '.join(ENTRA_KINDS)}")
