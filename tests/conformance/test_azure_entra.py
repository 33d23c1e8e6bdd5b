"""The Azure driver over Microsoft Entra ID tokens: the conformance suite against Azurite's OAuth mode.

The region is built as production builds it with ``entra = ...`` in the config:
``AzureRegion(container, account_url=https://..., credential=<a token credential>)``,
here a credential that mints Entra-shaped tokens (tests/support/entra.py), over
HTTPS to an Azurite started with ``--oauth basic``, trusting the test's CA. Plus
what tokens add: an expired token refused before it is sent, a token Azurite
refuses (wrong audience) as PermissionDenied, renewal, and the credential
closed with the region.
"""

import os
import socket
import time

import pytest
from azure.storage.blob.aio import BlobServiceClient

from regions import PermissionDenied, RetryPolicy
from regions.azure import AzureRegion
from tests.support.entra import AzuriteOAuth, MintedToken

from .suite import Harness, MiB, RegionConformance

PREFIX = "t/"


class EntraHarness(Harness):
    large_size = 3 * MiB + 123
    part_size = 1 * MiB
    page_size = 500

    def __init__(self, server: AzuriteOAuth):
        self.server = server

    def raw(self) -> BlobServiceClient:
        return BlobServiceClient(
            self.server.account_url, credential=MintedToken(), connection_verify=str(self.server.ca_file)
        )

    def region(self, container: str, credential=None, **kw) -> AzureRegion:
        kw.setdefault("retry", RetryPolicy(attempts=3, initial_wait=0.05, timeout=30))
        return AzureRegion(
            container,
            account_url=self.server.account_url,
            credential=credential or MintedToken(),
            ca_file=str(self.server.ca_file),
            prefix=PREFIX,
            name="ca",
            block_size=1 * MiB,
            page_size=self.page_size,
            **kw,
        )

    async def make_region(self) -> AzureRegion:
        container = "entra-" + os.urandom(8).hex()
        async with self.raw() as svc:
            await svc.create_container(container)
        return self.region(container)

    async def destroy_region(self, region: AzureRegion) -> None:
        async with self.raw() as svc:
            await svc.delete_container(region.container)

    async def corrupt(self, region: AzureRegion, name: str) -> None:
        async with self.raw() as svc:
            blob = svc.get_blob_client(region.container, region.prefix + name)
            props = await blob.get_blob_properties()
            data = bytearray(await (await blob.download_blob()).readall())
            data[len(data) // 2] ^= 0x01
            await blob.upload_blob(bytes(data), overwrite=True, metadata=props.metadata)

    async def make_down_region(self) -> AzureRegion:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return AzureRegion(
            "down",
            account_url=f"https://127.0.0.1:{port}/devstoreaccount1",
            credential=MintedToken(),
            ca_file=str(self.server.ca_file),
            name="ca",
            retry=RetryPolicy.fast(),
        )


class TestAzureEntra(RegionConformance):
    @pytest.fixture
    def harness(self, azurite_oauth):
        return EntraHarness(azurite_oauth)

    # -- what tokens add ------------------------------------------------------------------

    async def test_every_request_carries_a_storage_token(self, harness, region):
        await region.put("x", b"1", {})
        credential = region._token_credential.inner
        assert credential.issued and all(s == ("https://storage.azure.com/.default",) for s in credential.scopes)

    async def test_expired_token_is_refused_with_a_clear_error(self, harness, region):
        stale = MintedToken(lifetime=-120)
        expired = harness.region(region.container, credential=stale, retry=RetryPolicy.fast())
        try:
            with pytest.raises(PermissionDenied) as e:
                await expired.head("x")
            message = str(e.value)
            assert "Entra ID token" in message and "expired at" in message and "minted" in message
            assert stale.issued[0].token not in message
        finally:
            await expired.close()

    async def test_token_azurite_refuses_is_permission_denied(self, harness, region):
        # Azurite's own check: an audience that is not Storage's (a token for another resource).
        wrong = MintedToken(audience="https://vault.azure.net")
        refused = harness.region(region.container, credential=wrong, retry=RetryPolicy.fast())
        try:
            with pytest.raises(PermissionDenied) as e:
                await refused.put("x", b"1", {})
            assert wrong.issued[0].token not in str(e.value)
        finally:
            await refused.close()

    async def test_a_token_near_its_end_is_renewed(self, harness, region):
        # azure-core asks the credential again once the token is within its refresh margin (5 min).
        short = MintedToken(lifetime=200)
        renewing = harness.region(region.container, credential=short)
        try:
            await renewing.put("a", b"1", {})
            await renewing.put("b", b"2", {})
            assert len(short.issued) == 2 and all(t.expires_on > time.time() for t in short.issued)
        finally:
            await renewing.close()
        assert short.closed  # the region closes the credential it was given

    async def test_http_account_url_is_refused_for_tokens(self):
        # The SDK sends a bearer token over HTTPS only (the config refuses http:// with entra too).
        with pytest.raises(ValueError, match="HTTPS"):
            AzureRegion("c", account_url="http://127.0.0.1:1/devstoreaccount1", credential=MintedToken(), name="ca")
