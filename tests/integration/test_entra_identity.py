"""Azure regions built from the config with azure-identity's own credentials, end to end against Azurite's OAuth mode.

``open_region`` (what the Runtime of every process uses) builds the region
from an ``[regions.ca]`` with ``entra = ...``: azure-identity's
ManagedIdentityCredential, its ClientSecretCredential behind the re-read
secret file, its WorkloadIdentityCredential. They get their tokens from a
local stand-in for Entra ID's endpoints (tests/support/entra.py; the App
Service managed identity protocol and the client credentials grant), which
mints tokens Azurite checks; nothing in between is replaced.
"""

import os

import pytest
from azure.storage.blob.aio import BlobServiceClient

from regions import PermissionDenied, RetryPolicy
from replicator.config import AzureRegionConfig
from replicator.runtime import open_region
from tests.support.entra import TENANT, IdentityEndpoint, MintedToken

CLIENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture
async def identity(azurite_oauth):
    endpoint = await IdentityEndpoint(azurite_oauth.cert_file, azurite_oauth.key_file).start()
    try:
        yield endpoint
    finally:
        await endpoint.stop()


@pytest.fixture
async def container(azurite_oauth):
    name = "identity-" + os.urandom(6).hex()
    raw = BlobServiceClient(
        azurite_oauth.account_url, credential=MintedToken(), connection_verify=str(azurite_oauth.ca_file)
    )
    async with raw:
        await raw.create_container(name)
        try:
            yield name
        finally:
            await raw.delete_container(name)


def region_of(azurite_oauth, container, **entra):
    cfg = AzureRegionConfig(
        kind="azure",
        country="CA",
        location="canadacentral",
        container=container,
        account_url=azurite_oauth.account_url,
        ca_file=azurite_oauth.ca_file,
        **entra,
    )
    return open_region("ca", cfg, RetryPolicy(attempts=2, initial_wait=0.05, timeout=20))


async def round_trip(region, name: str, data: bytes) -> None:
    await region.put(name, data, {"k": "v"})
    info, stream = await region.get(name)
    assert b"".join([c async for c in stream]) == data and info.meta == {"k": "v"}
    assert name in [i.name async for i in region.list()]


async def test_managed_identity(azurite_oauth, identity, container, monkeypatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.url + "/msi/token")  # App Service's variables
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    region = region_of(azurite_oauth, container, entra="managed-identity")
    try:
        await round_trip(region, "mi", b"managed identity")
    finally:
        await region.close()
    asked = [s for s in identity.seen if s["kind"] == "managed"]
    assert asked and all(s["resource"] == "https://storage.azure.com" and s["header"] == identity.header for s in asked)


async def test_service_principal_secret_rotated_without_a_restart(azurite_oauth, identity, container, tmp_path):
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("first-secret-value\n")
    identity.accepted = {"first-secret-value"}
    # azure-core asks for a token again once it is within 300 s (less up to 60 s of jitter) of its end:
    # at every request with these, so the next request after the rotation needs one.
    identity.lifetime = 230
    region = region_of(
        azurite_oauth, container, entra="service-principal", tenant_id=TENANT, client_id=CLIENT_ID,
        client_secret_file=secret_file, authority=identity.url,
    )  # fmt: skip
    try:
        await round_trip(region, "before", b"1")
        # Rotation: a second secret in Entra, written over the file atomically, the first one deleted.
        tmp = tmp_path / "client-secret.new"
        tmp.write_text("second-secret-value\n")
        tmp.replace(secret_file)
        identity.accepted = {"second-secret-value"}
        await round_trip(region, "after", b"2")
    finally:
        await region.close()
    grants = [s for s in identity.seen if s["kind"] == "token"]
    assert [g["client_secret"] for g in grants][:1] == ["first-secret-value"]
    assert grants[-1]["client_secret"] == "second-secret-value"
    assert all(g["tenant"] == TENANT and g["client_id"] == CLIENT_ID for g in grants)
    assert all(g["scope"] == "https://storage.azure.com/.default" for g in grants)


async def test_refused_client_secret_is_permission_denied(azurite_oauth, identity, container, tmp_path):
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("a-revoked-secret")
    region = region_of(
        azurite_oauth, container, entra="service-principal", tenant_id=TENANT, client_id=CLIENT_ID,
        client_secret_file=secret_file, authority=identity.url,
    )  # fmt: skip
    region.retry = RetryPolicy.fast()
    try:
        with pytest.raises(PermissionDenied) as e:
            await region.head("x")
        assert "invalid_client" in str(e.value) or "AADSTS7000215" in str(e.value)
        assert "a-revoked-secret" not in str(e.value)
    finally:
        await region.close()


async def test_workload_identity(azurite_oauth, identity, container, tmp_path):
    token_file = tmp_path / "azure-identity-token"  # what the kubelet projects into the pod
    token_file.write_text("federated.service-account.jwt")
    identity.accepted = {"federated.service-account.jwt"}
    region = region_of(
        azurite_oauth, container, entra="workload-identity", tenant_id=TENANT, client_id=CLIENT_ID,
        token_file=token_file, authority=identity.url,
    )  # fmt: skip
    try:
        await round_trip(region, "wi", b"workload identity")
    finally:
        await region.close()
    grants = [s for s in identity.seen if s["kind"] == "token"]
    assert grants and grants[0]["client_assertion"] == "federated.service-account.jwt"
    assert grants[0]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
