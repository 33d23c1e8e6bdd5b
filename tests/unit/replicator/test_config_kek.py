"""[keys]: exactly one KEK source, the Barbican one named by reference, checked at load."""

from __future__ import annotations

import pytest

from keys import BarbicanKek, KeyFile
from replicator.config import ConfigError, load_config
from replicator.embedded import LOCAL_REGIONS, config_text
from replicator.runtime import kek_source

REF = "https://kms.example:9311/v1/secrets/6a1e5a0e-6d2a-4d8b-9b55-0f0c1c7b2a01"


def write(tmp_path, kek: str):
    path = tmp_path / "replicator.toml"
    path.write_text(config_text("n1", LOCAL_REGIONS, kek=kek))
    return path


def test_a_barbican_kek_by_reference(tmp_path):
    (tmp_path / "clouds.yaml").write_text("clouds: {}\n")
    config = load_config(
        write(tmp_path, f'barbican_secret = "{REF}"\nbarbican_cloud = "kek"\nclouds_yaml = "clouds.yaml"')
    )
    assert config.keys.clouds_yaml == tmp_path / "clouds.yaml"  # beside the config, like the other paths
    source = kek_source(config)
    assert source == BarbicanKek(REF, cloud="kek", clouds_yaml=tmp_path / "clouds.yaml")


def test_without_a_cloud_the_credentials_are_the_os_variables(tmp_path):
    source = kek_source(load_config(write(tmp_path, f'barbican_secret = "{REF}"')))
    assert isinstance(source, BarbicanKek) and source.cloud is None and source.clouds_yaml is None


def test_the_other_sources_are_unchanged(tmp_path):
    KeyFile.generate(tmp_path / "kek.key")
    assert kek_source(load_config(write(tmp_path, 'key_file = "kek.key"'))) == KeyFile(tmp_path / "kek.key")


@pytest.mark.parametrize(
    "kek, message",
    [
        ("", "give passphrase_env, key_file or barbican_secret (one of them)"),
        (f'key_file = "kek.key"\nbarbican_secret = "{REF}"', "give passphrase_env, key_file or barbican_secret"),
        (f'passphrase_env = "X"\nbarbican_secret = "{REF}"', "give passphrase_env, key_file or barbican_secret"),
        ('key_file = "kek.key"\nbarbican_cloud = "kek"', "barbican_cloud and clouds_yaml go with barbican_secret"),
        (f'barbican_secret = "{REF}"\nclouds_yaml = "c.yaml"', "clouds_yaml goes with barbican_cloud"),
        (
            'barbican_secret = "http://kms.example/v1/secrets/6a1e5a0e-6d2a-4d8b-9b55-0f0c1c7b2a01"',
            "a Barbican secret reference is https://HOST[:PORT]/v1/secrets/<uuid> (http only on the loopback)",
        ),
        (
            f'barbican_secret = "{REF}"\nbarbican_cloud = "kek"\nclouds_yaml = "absent.yaml"',
            "absent.yaml does not exist",
        ),
    ],
)
def test_what_is_refused_names_the_line(tmp_path, kek, message):
    KeyFile.generate(tmp_path / "kek.key")
    path = write(tmp_path, kek)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(info.value).startswith(f"{path}:")
    assert not str(info.value).startswith(f"{path}:?:")  # a line number, not a guess
