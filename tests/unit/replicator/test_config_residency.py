"""The residency rule applied by load_config (replicator/residency.py): every refusal names the
config file and the line of the field that is wrong; a wrong policy names the policy's own line;
endpoints are read from an Azure account URL, connection string or authority and from a Swift
cloud's clouds.yaml; the policy the service runs on (runtime.policy_of) is checked too."""

from __future__ import annotations

from pathlib import Path

import pytest

from keys.policy import ResidencyError
from replicator.config import DEFAULT_POLICY, ConfigError, load_config
from replicator.embedded import ensure
from replicator.runtime import policy_of

PINS = """
[[regions]]
name = "ca"
provider = "local"
location = "local"
country = "CA"

[[regions]]
name = "jp"
provider = "local"
location = "local"
country = "JP"
"""
JP_TABLE = '[regions.jp]\nkind = "local"\ncountry = "JP"\npath = "regions/jp"'


def _line_of(text: str, needle: str, after: str | None = None) -> int:
    lines = text.splitlines()
    start = 0 if after is None else next(i for i, line in enumerate(lines) if after in line)
    return next(i + 1 for i, line in enumerate(lines) if i >= start and needle in line)


def _setup(tmp_path: Path, policy_text: str | None = None, change=lambda t: t) -> Path:
    """The embedded default's config under tmp_path, changed, naming ``policy_text`` as its policy."""
    config, _ = ensure(tmp_path / "var")
    text = change(config.read_text())
    if policy_text is not None:
        (config.parent / "policy.toml").write_text(policy_text)
        text = 'policy = "policy.toml"\n' + text
    config.write_text(text)
    return config


def _azure_jp(**keys: str):
    extra = "".join(f"\n{k} = {v!r}".replace("'", '"') for k, v in keys.items())
    return lambda t: t.replace(JP_TABLE, f'[regions.jp]\nkind = "azure"\nlocation = "japaneast"\ncountry = "JP"{extra}')


def _policy(head: str = "", pins: str = "") -> str:
    return DEFAULT_POLICY.read_text().replace('allowed_countries = ["CA", "JP"]', head) + pins


def _refused(config: Path, needle: str, message: str, after: str | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(config)
    text = config.read_text()
    assert str(err.value) == f"{config}:{_line_of(text, needle, after)}: {message}"
    return str(err.value)


def test_the_embedded_default_passes_with_the_shipped_policy_and_with_pins(tmp_path):
    load_config(_setup(tmp_path))
    config = _setup(tmp_path / "pinned", _policy('allowed_countries = ["CA", "JP"]', PINS))
    assert [r.name for r in policy_of(load_config(config)).regions] == ["ca", "jp"]


def test_narrowing_refuses_the_region_left_out(tmp_path):
    config = _setup(tmp_path, _policy('allowed_countries = ["CA"]'))
    _refused(
        config,
        'country = "JP"',
        f"region 'jp': country 'JP' is not allowed by the policy {config.parent / 'policy.toml'}"
        " (allowed_countries: CA)",
    )


def test_a_widening_policy_names_the_policy_file_and_line(tmp_path):
    config = _setup(tmp_path, _policy('allowed_countries = ["CA", "JP", "US"]'))
    policy = config.parent / "policy.toml"
    with pytest.raises(ConfigError) as err:
        load_config(config)
    line = _line_of(policy.read_text(), "allowed_countries")
    assert str(err.value) == f"{policy}:{line}: country 'US' is outside Canada and Japan (the policy of {config})"


@pytest.mark.parametrize(
    "change, needle, after, message",
    [
        (
            lambda t: t.replace("[regions.jp]", "[regions.tokyo]"),
            "[regions.tokyo]",
            None,
            "region 'tokyo': the policy {policy} pins only the regions ca, jp",
        ),
        (
            _azure_jp(connection_string_env="HOME"),
            'kind = "azure"',
            None,
            "region 'jp': provider 'azure' is not the policy's pinned 'local' ({policy})",
        ),
        (
            lambda t: t.replace(JP_TABLE, JP_TABLE + '\nlocation = "osaka"'),
            'location = "osaka"',
            None,
            "region 'jp': location 'osaka' is not the policy's pinned 'local' ({policy})",
        ),
        (
            lambda t: (
                t.replace('country = "CA"', 'country = "XX"')
                .replace('country = "JP"', 'country = "CA"')
                .replace('country = "XX"', 'country = "JP"')
            ),
            'country = "JP"',
            None,
            "region 'ca': country 'JP' is not the policy's pinned 'CA' ({policy})",
        ),
    ],
)
def test_a_pin_mismatch_names_the_line_of_the_field(tmp_path, change, needle, after, message):
    config = _setup(tmp_path, _policy('allowed_countries = ["CA", "JP"]', PINS), change)
    _refused(config, needle, message.format(policy=config.parent / "policy.toml"), after)


def test_two_regions_in_one_country_are_refused_at_the_second(tmp_path):
    config = _setup(tmp_path, change=lambda t: t.replace('country = "JP"', 'country = "CA"'))
    _refused(
        config,
        'country = "CA"',
        "region 'jp': region 'ca' is in CA too: the two regions must be in two countries",
        after="[regions.jp]",
    )


@pytest.mark.parametrize("country", ["US", "XX"])
def test_an_unknown_country_is_refused_at_its_line(tmp_path, country):
    config = _setup(tmp_path, change=lambda t: t.replace('country = "JP"', f'country = "{country}"'))
    _refused(
        config,
        f'country = "{country}"',
        f"region 'jp': country '{country}' is outside Canada and Japan (allowed: CA, JP)",
    )


def test_an_azure_account_url_in_a_sovereign_cloud_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCOUNT_KEY", "c2VjcmV0")
    url = "https://acct.blob.core.chinacloudapi.cn"
    config = _setup(tmp_path, change=_azure_jp(account_url=url, account_key_env="ACCOUNT_KEY"))
    _refused(config, "account_url", "region 'jp': account_url 'acct.blob.core.chinacloudapi.cn' is in CN, not JP")


def test_an_azure_connection_string_is_read_for_its_host_only(tmp_path, monkeypatch):
    secret = "c2VjcmV0a2V5"
    monkeypatch.setenv(
        "CONN",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={secret};EndpointSuffix=core.usgovcloudapi.net",
    )
    config = _setup(tmp_path, change=_azure_jp(connection_string_env="CONN"))
    message = _refused(
        config,
        "connection_string_env",
        "region 'jp': connection_string_env 'acct.blob.core.usgovcloudapi.net' is in US, not JP",
    )
    assert secret not in message
    monkeypatch.setenv("CONN", f"AccountName=acct;AccountKey={secret};BlobEndpoint=https://acct.blob.core.windows.net/")
    load_config(config)  # the public cloud names no country: the declared one stands


def test_an_entra_authority_in_a_sovereign_cloud_is_refused(tmp_path):
    config = _setup(
        tmp_path,
        change=_azure_jp(
            account_url="https://acct.blob.core.windows.net", entra="default", authority="login.microsoftonline.us"
        ),
    )
    _refused(config, "authority", "region 'jp': authority 'login.microsoftonline.us' is in US, not JP")


def _swift_jp(clouds_yaml: Path, location: str = "tyo1"):
    return lambda t: t.replace(
        JP_TABLE,
        f'[regions.jp]\nkind = "swift"\nprovider = "conoha"\nlocation = "{location}"\ncountry = "JP"\n'
        f'cloud = "conoha"\nclouds_yaml = "{clouds_yaml}"',
    )


def _clouds_yaml(tmp_path: Path, region_name: str | None, auth_url: str) -> Path:
    path = tmp_path / "clouds.yaml"
    region = f"    region_name: {region_name}\n" if region_name else ""
    path.write_text(f"clouds:\n  conoha:\n{region}    auth:\n      auth_url: {auth_url}\n      username: u\n")
    return path


@pytest.mark.parametrize(
    "region_name, auth_url, message",
    [
        ("sin1", "https://identity.sin1.conoha.io/v3", "cloud 'sin1' is in SG, not JP"),
        (None, "https://identity.sjc1.conoha.io/v3", "cloud 'identity.sjc1.conoha.io' is in US, not JP"),
        ("tyo2", "https://identity.tyo2.conoha.io/v3", "cloud 'tyo2' is ConoHa's tyo2, not the location 'tyo1'"),
    ],
)
def test_a_swift_cloud_elsewhere_is_refused(tmp_path, region_name, auth_url, message):
    config = _setup(tmp_path, change=_swift_jp(_clouds_yaml(tmp_path, region_name, auth_url)))
    _refused(config, 'cloud = "conoha"', f"region 'jp': {message}")


def test_a_swift_cloud_that_agrees_or_says_nothing_passes(tmp_path):
    load_config(
        _setup(tmp_path, change=_swift_jp(_clouds_yaml(tmp_path, "tyo1", "https://identity.tyo1.conoha.io/v3")))
    )
    other = tmp_path / "devstack"
    other.mkdir()
    load_config(_setup(other, change=_swift_jp(_clouds_yaml(other, "RegionOne", "http://127.0.0.1:5000/v3"))))


def test_the_policy_the_service_runs_on_is_checked_too(tmp_path):
    """A config built in code (not through load_config) meets the same rule in runtime.policy_of."""
    config = load_config(_setup(tmp_path))
    moved = config.model_copy(
        update={"regions": {**config.regions, "jp": config.regions["jp"].model_copy(update={"country": "CA"})}}
    )
    with pytest.raises(ResidencyError, match="the two regions must be in two countries"):
        policy_of(moved)


def test_a_swift_cloud_that_cannot_be_read_is_left_to_the_driver(tmp_path):
    """Nothing is known from it (a missing cloud, an unknown auth plugin): the declared country stands,
    and the driver says what is wrong on first use, as before."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  conoha:\n    auth_type: nosuch\n    auth:\n      auth_url: https://x.example/v3\n")
    load_config(_setup(tmp_path, change=_swift_jp(clouds)))
    clouds.write_text("clouds:\n  another: {}\n")
    load_config(_setup(tmp_path / "missing", change=_swift_jp(clouds)))
