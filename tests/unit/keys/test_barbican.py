"""keys.barbican without a Barbican: which references it accepts, what it says when Keystone cannot be
reached or the credentials are not there, and that no message or repr holds a credential.
(The real service: ``tests/integration/test_barbican_kek.py``.)"""

from __future__ import annotations

import os
import socket
import time

import pytest

from keys import BarbicanKek, KeyServiceError
from keys.barbican import check_ref

UUID = "6a1e5a0e-6d2a-4d8b-9b55-0f0c1c7b2a01"
REF = f"https://kms.example:9311/v1/secrets/{UUID}"
PASSWORD = "pw-that-must-not-leak-1234"


@pytest.mark.parametrize(
    "ref",
    [
        REF,
        f"https://kms.example/key-manager/v1/secrets/{UUID}",  # behind a path prefix
        f"http://127.0.0.1:9311/v1/secrets/{UUID}",  # plain http on the loopback only
        f"http://localhost:9311/v1/secrets/{UUID.upper()}",
        f"http://[::1]:9311/v1/secrets/{UUID}",
    ],
)
def test_references_it_accepts(ref):
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        f"http://kms.example:9311/v1/secrets/{UUID}",  # the key would cross the network in clear
        f"https://user:{PASSWORD}@kms.example/v1/secrets/{UUID}",  # credentials go by reference, not in a URL
        f"https://kms.example/v1/secrets/{UUID}?x=1",
        f"https://kms.example/v1/secrets/{UUID}#f",
        f"https://kms.example/v1/secrets/{UUID}/payload",
        "https://kms.example/v1/secrets/not-a-uuid",
        f"https://kms.example/v1/containers/{UUID}",
        f"ftp://kms.example/v1/secrets/{UUID}",
        f"https://kms.example:99999/v1/secrets/{UUID}",
        UUID,
        "",
    ],
)
def test_references_it_refuses_without_echoing_them(ref):
    with pytest.raises(ValueError) as info:
        check_ref(ref)
    assert PASSWORD not in str(info.value) and (not ref or ref not in str(info.value))


def test_nothing_is_contacted_until_asked_and_the_repr_holds_no_credential(tmp_path):
    kek = BarbicanKek(REF, cloud="kek", clouds_yaml=tmp_path / "clouds.yaml")  # the file need not exist yet
    assert kek.ref == REF and kek.kind == "barbican"
    assert repr(kek) == f"BarbicanKek({REF!r}, cloud='kek', clouds_yaml={tmp_path / 'clouds.yaml'!r})"
    assert kek == BarbicanKek(REF, cloud="kek", clouds_yaml=tmp_path / "clouds.yaml") != BarbicanKek(REF)
    with pytest.raises(ValueError, match="a clouds.yaml path goes with a cloud name"):
        BarbicanKek(REF, clouds_yaml=tmp_path / "clouds.yaml")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def _clouds_yaml(tmp_path, auth_url: str) -> str:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n  kek:\n    auth:\n"
        f"      auth_url: {auth_url}\n      username: kek\n      password: {PASSWORD}\n"
        "      project_name: kek\n      user_domain_name: Default\n      project_domain_name: Default\n"
        "    region_name: RegionOne\n    identity_api_version: 3\n"
    )
    return str(path)


@pytest.mark.parametrize("call", ["fetch", "probe"])
def test_keystone_that_does_not_answer(tmp_path, call):
    port = _closed_port()
    kek = BarbicanKek(
        f"http://127.0.0.1:{port}/v1/secrets/{UUID}",
        cloud="kek",
        clouds_yaml=_clouds_yaml(tmp_path, f"http://127.0.0.1:{port}/v3"),
        timeout=5,
    )
    started = time.monotonic()
    with pytest.raises(KeyServiceError) as info:
        getattr(kek, call)()
    assert time.monotonic() - started < 5  # refused, not waited for
    assert info.value.status is None and info.value.ref == kek.ref
    assert str(info.value).startswith(f"Barbican secret {kek.ref}: no answer from Keystone for cloud 'kek' (")
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


def test_missing_credentials_are_named_not_shown(tmp_path, monkeypatch):
    clouds = _clouds_yaml(tmp_path, "http://127.0.0.1:1/v3")
    with pytest.raises(KeyServiceError, match=r"no Keystone credentials from cloud 'nope' \(Cloud nope was not found"):
        BarbicanKek(REF, cloud="nope", clouds_yaml=clouds).fetch()
    with pytest.raises(KeyServiceError, match=f"clouds.yaml {tmp_path}/absent.yaml does not exist"):
        BarbicanKek(REF, cloud="kek", clouds_yaml=tmp_path / "absent.yaml").probe()
    for name in [n for n in os.environ if n.startswith("OS_")]:
        monkeypatch.delenv(name)
    with pytest.raises(KeyServiceError, match=r"no Keystone credentials from the OS_\* environment variables"):
        BarbicanKek(REF).fetch()
