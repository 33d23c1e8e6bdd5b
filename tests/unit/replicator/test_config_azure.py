"""[regions.ca]: one Azure credential (a connection string, an account key, or Entra ID tokens), checked at load,
and the azure-identity credential each ``entra`` kind builds (no network: nothing is asked until a request)."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.identity import aio

from regions import PermissionDenied
from regions.azure.credential import CheckedCredential, entra_credential
from replicator.config import ConfigError, load_config
from replicator.runtime import open_region

ACCOUNT = "https://acct.blob.core.windows.net"

CONFIG = """\
read_preference = "jp"
[keys]
keyring = "keyring.json"
passphrase_env = "REPLICATOR_TEST_PASSPHRASE"
[regions.ca]
kind = "azure"
location = "canadacentral"
country = "CA"
{azure}
[regions.jp]
kind = "local"
country = "JP"
path = "jp"
"""


def load(tmp_path, monkeypatch, azure: str):
    monkeypatch.setenv("REPLICATOR_TEST_PASSPHRASE", "not-a-real-passphrase")
    path = tmp_path / "replicator.toml"
    path.write_text(CONFIG.format(azure=azure))
    return load_config(path)


@pytest.mark.parametrize(
    "azure, kind",
    [
        (f'account_url = "{ACCOUNT}"\nentra = "managed-identity"', aio.ManagedIdentityCredential),
        (f'account_url = "{ACCOUNT}"\nentra = "managed-identity"\nclient_id = "c"', aio.ManagedIdentityCredential),
        (
            f'account_url = "{ACCOUNT}"\nentra = "workload-identity"\ntenant_id = "t"\nclient_id = "c"\n'
            'token_file = "token"',
            aio.WorkloadIdentityCredential,
        ),
        (f'account_url = "{ACCOUNT}"\nentra = "default"', aio.DefaultAzureCredential),
    ],
)
async def test_each_entra_kind_builds_its_azure_identity_credential(tmp_path, monkeypatch, azure, kind):
    config = load(tmp_path, monkeypatch, azure)
    region = open_region("ca", config.regions["ca"], retry=None)
    try:
        assert isinstance(region._token_credential, CheckedCredential)
        assert isinstance(region._token_credential.inner, kind)
    finally:
        await region.close()


async def test_a_service_principal_reads_its_secret_from_a_file(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("s3cret-value")
    config = load(
        tmp_path,
        monkeypatch,
        f'account_url = "{ACCOUNT}"\nentra = "service-principal"\ntenant_id = "t"\nclient_id = "c"\n'
        'client_secret_file = "secret"',
    )
    assert config.regions["ca"].client_secret_file == tmp_path / "secret"  # beside the config
    assert config.regions["ca"].secret() is None  # no key in the environment
    region = open_region("ca", config.regions["ca"], retry=None)
    try:
        assert "s3cret-value" not in repr(region) and "s3cret-value" not in repr(region._token_credential)
    finally:
        await region.close()


@pytest.mark.parametrize(
    "azure, message",
    [
        ("", "give connection_string_env, or account_url with account_key_env, or account_url with entra"),
        (f'account_url = "{ACCOUNT}"', "give connection_string_env, or account_url with account_key_env"),
        (
            f'account_url = "{ACCOUNT}"\naccount_key_env = "K"\nentra = "default"',
            "give connection_string_env, or account_url with account_key_env, or account_url with entra",
        ),
        ('connection_string_env = "C"\nentra = "default"', "give connection_string_env, or account_url"),
        ('entra = "default"', "give connection_string_env, or account_url"),
        (
            'account_url = "http://acct.blob.core.windows.net"\nentra = "default"',
            "entra tokens are sent over https only",
        ),
        (f'account_url = "{ACCOUNT}"\nentra = "kerberos"', "entra"),
        (
            f'account_url = "{ACCOUNT}"\nentra = "service-principal"\ntenant_id = "t"\nclient_id = "c"',
            "entra = service-principal needs tenant_id, client_id and client_secret_file",
        ),
        (
            f'account_url = "{ACCOUNT}"\nentra = "service-principal"\ntenant_id = "t"\nclient_id = "c"\n'
            'client_secret_file = "absent"',
            "client_secret_file",
        ),
        (f'account_url = "{ACCOUNT}"\nentra = "managed-identity"\ntoken_file = "t"', "token_file goes with"),
        ('connection_string_env = "C"\ntenant_id = "t"', "go with entra"),
    ],
)
def test_what_is_refused_names_the_line(tmp_path, monkeypatch, azure, message):
    monkeypatch.setenv("C", "UseDevelopmentStorage=true")
    monkeypatch.setenv("K", "a2V5")
    with pytest.raises(ConfigError) as e:
        load(tmp_path, monkeypatch, azure)
    assert message in str(e.value) and "replicator.toml:" in str(e.value)


class _Fixed:
    def __init__(self, expires_on: float):
        self.expires_on = expires_on
        self.closed = False

    async def get_token(self, *scopes, **kwargs):
        return AccessToken("header.payload.signature", int(self.expires_on))

    async def close(self):
        self.closed = True


async def test_an_expired_token_is_refused_before_it_is_sent():
    inner = _Fixed(time.time() - 30)
    checked = CheckedCredential(inner, kind="workload identity", region="ca")
    with pytest.raises(PermissionDenied) as e:
        await checked.get_token("https://storage.azure.com/.default")
    assert "expired at" in str(e.value) and "workload identity" in str(e.value) and "region 'ca'" in str(e.value)
    assert "header.payload.signature" not in str(e.value)
    with pytest.raises(PermissionDenied):  # what azure-core asks first, from a credential without it
        await checked.get_token_info("https://storage.azure.com/.default")
    inner.expires_on = time.time() + 3600
    assert (await checked.get_token("s")).token == "header.payload.signature"
    assert (await checked.get_token_info("s")).token == "header.payload.signature"
    await checked.close()
    assert inner.closed


class _WithInfo(_Fixed):
    async def get_token_info(self, *scopes, options=None):
        return AccessTokenInfo("with.refresh.hint", int(self.expires_on), refresh_on=int(self.expires_on) - 600)


async def test_the_inner_refresh_hint_is_kept():
    inner = _WithInfo(time.time() + 3600)
    info = await CheckedCredential(inner, kind="managed identity", region="ca").get_token_info("s")
    assert (info.token, info.refresh_on) == ("with.refresh.hint", int(inner.expires_on) - 600)
    inner.expires_on = time.time() - 1
    with pytest.raises(PermissionDenied, match="managed identity credential expired at"):
        await CheckedCredential(inner, kind="managed identity", region="ca").get_token_info("s")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="one of default, workload-identity"):
        entra_credential("kerberos")  # type: ignore[arg-type]
