"""The Swift driver over a Keystone application credential: the conformance suite, and what such a credential adds.

The region is built as production builds it: a clouds.yaml cloud, here with
``auth_type: v3applicationcredential``, made against the dev stack's Keystone
for the customer user (role ``member`` on its project, where the Swift account
is). Then: an expired credential and a revoked one fail with a PermissionDenied
that says so, and a credential rotated in the clouds.yaml is picked up by a
running region without a restart.
"""

import asyncio
import os
import time

import pytest

from regions import PermissionDenied, RetryPolicy
from regions.swift import auth as swift_auth
from tests.support.appcred import AppCredentials
from tests.support.stack import stack_env, stack_fixture

from . import test_swift  # the module, not its names: its TestSwift class must not be collected twice
from .suite import RegionConformance, read_all


@stack_fixture(scope="module")
def app_credentials():
    creds = AppCredentials(
        stack_env("REPLICATOR_TEST_CLOUDS_YAML"),
        stack_env("REPLICATOR_TEST_SWIFT_CLOUD"),
        stack_env("REPLICATOR_TEST_KEYSTONE_URL"),
    )
    try:
        yield creds
    finally:
        creds.delete_all()


@pytest.fixture(scope="module")
def appcred_cloud(app_credentials, tmp_path_factory):
    """One application credential for the whole suite, in a clouds.yaml of its own."""
    cred = app_credentials.create(f"replicator-conformance-{os.urandom(4).hex()}", expires_in=3600)
    return app_credentials.write_cloud(tmp_path_factory.mktemp("appcred") / "clouds.yaml", cred)


async def _remove(harness, container: str) -> None:
    """Remove a container a test's own credential can no longer reach, with the suite's."""
    region = harness.region(container=container)
    try:
        await harness.destroy_region(region)
    finally:
        await region.close()


class TestSwiftAppCredential(RegionConformance):
    @pytest.fixture
    def harness(self, appcred_cloud, tmp_path):
        return test_swift.SwiftHarness(str(appcred_cloud), "appcred", tmp_path)

    # -- what an application credential adds ----------------------------------------------

    async def test_the_region_authenticates_with_the_application_credential(self, region):
        await region.put("x", b"1", {})
        assert region._conn.config.auth["application_credential_id"]
        assert "password" not in region._conn.config.auth

    async def test_expired_credential_is_permission_denied(self, harness, app_credentials, tmp_path):
        cred = app_credentials.create(f"short-{os.urandom(4).hex()}", expires_in=6)
        path = app_credentials.write_cloud(tmp_path / "clouds.yaml", cred)
        region = harness.region(clouds_yaml=path, retry=RetryPolicy.fast())
        try:
            await region.put("x", b"1", {})  # its token expires with the credential
            await asyncio.sleep(max(0.0, cred.expires_at.timestamp() - time.time()) + 1.5)
            with pytest.raises(PermissionDenied) as e:
                await region.head("x")
            assert "application credential that expired or was revoked" in str(e.value)
            assert cred.secret not in str(e.value) and cred.secret not in repr(e.value.__cause__)
        finally:
            await region.close()
            await _remove(harness, region.container)

    async def test_revoked_credential_is_permission_denied(self, harness, app_credentials, tmp_path):
        cred = app_credentials.create(f"revoked-{os.urandom(4).hex()}")
        path = app_credentials.write_cloud(tmp_path / "clouds.yaml", cred)
        first = harness.region(clouds_yaml=path)
        await first.put("x", b"1", {})
        app_credentials.delete(cred)
        later = harness.region(clouds_yaml=path, container=first.container, retry=RetryPolicy.fast())
        try:  # the next authentication (a restart, a token renewal) is refused
            with pytest.raises(PermissionDenied) as e:
                await later.head("x")
            assert "Keystone refused the credentials of cloud 'appcred'" in str(e.value)
        finally:
            await later.close()
            await first.close()
            await _remove(harness, first.container)

    async def test_rotated_credential_is_picked_up_without_a_restart(
        self, harness, app_credentials, tmp_path, monkeypatch
    ):
        monkeypatch.setattr(swift_auth, "CREDENTIAL_LOOK", 0.2)
        old = app_credentials.create(f"old-{os.urandom(4).hex()}")
        path = app_credentials.write_cloud(tmp_path / "clouds.yaml", old)
        region = harness.region(clouds_yaml=path)
        try:
            await region.put("x", b"before", {})
            old_token = region._token
            new = app_credentials.write_cloud(path, app_credentials.create(f"new-{os.urandom(4).hex()}"))
            assert new == path
            await asyncio.sleep(0.3)  # one look later
            await region.put("x", b"after", {})
            assert region._token != old_token
            assert region._conn.config.auth["application_credential_id"] != old.id
            app_credentials.delete(old)  # the operator revokes the old one once every node moved
            assert (await read_all(region, "x"))[1] == b"after"
        finally:
            await harness.destroy_region(region)
            await region.close()
