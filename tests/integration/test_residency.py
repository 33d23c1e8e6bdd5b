"""Residency enforced end to end (docs/privacy.md §4; issue 16, item 5).

The real ``replicator`` executable, as an operator runs it: ``serve``,
``reconcile`` and every other command that loads a config refuse a config the
policy does not allow with exit 2 and ``replicator: <config>:<line>: ...`` on
stderr, before they open anything (no journal, keyring or audit log is
created); and the shipped deploy configs (``deploy/replicator.toml``,
``deploy/replicator-cluster.toml`` and the ConfigMap's copies of it and of the
policy) pass the same check, with the shipped policy and with that policy
pinned to the production regions.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keys import receipts
from replicator.config import load_config
from replicator.embedded import ensure
from replicator.runtime import policy_of

REPLICATOR = str(Path(sys.executable).parent / "replicator")
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONFIGMAP = DEPLOY / "k8s" / "base" / "configmap.yaml"

# The shipped policy pinned to the regions the production configs name.
PRODUCTION_PINS = """
[[regions]]
name = "ca"
provider = "azure"
location = "canadacentral"
country = "CA"

[[regions]]
name = "jp"
provider = "conoha"
location = "tyo1"
country = "JP"
"""
LOCAL_PINS = PRODUCTION_PINS.replace('"azure"', '"local"').replace('"conoha"', '"local"')
LOCAL_PINS = LOCAL_PINS.replace('"canadacentral"', '"local"').replace('"tyo1"', '"local"')

# Every command that loads a config, with what it needs besides --config.
COMMANDS = [
    ["serve", "--port", "{port}"],
    ["reconcile", "--dry-run"],
    ["health"],
    ["work"],
    ["journal", "list"],
    ["tokens", "list"],
    ["erase", "somebody", "--yes"],
    ["keys", "rotate"],
    ["audit", "verify"],
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _line_of(text: str, needle: str, after: str) -> int:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return next(i + 1 for i, line in enumerate(lines) if i >= start and needle in line)


def _refused_config(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """An embedded-default config the policy refuses, and the stderr line expected for it."""
    config, _ = ensure(tmp_path / "var")
    text = config.read_text()
    policy = (REPO / "deploy" / "policy.toml").read_text()
    if kind == "pin":  # the policy pins jp to location "local"; the config says "osaka"
        (config.parent / "policy.toml").write_text(policy + LOCAL_PINS)
        text = 'policy = "policy.toml"\n' + text.replace('country = "JP"', 'country = "JP"\nlocation = "osaka"')
        message = f"region 'jp': location 'osaka' is not the policy's pinned 'local' ({config.parent / 'policy.toml'})"
        needle = 'location = "osaka"'
    else:  # two regions in one country
        text = text.replace('country = "JP"', 'country = "CA"')
        message = "region 'jp': region 'ca' is in CA too: the two regions must be in two countries"
        needle = 'country = "CA"'
    config.write_text(text)
    return config, f"replicator: {config}:{_line_of(text, needle, '[regions.jp]')}: {message}"


@pytest.mark.parametrize("kind", ["pin", "one-country"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]).replace(" --", " "))
def test_a_command_refuses_a_config_outside_the_policy(tmp_path, kind, command):
    config, expected = _refused_config(tmp_path, kind)
    before = sorted(p.name for p in config.parent.iterdir())
    args = [a.format(port=_free_port()) for a in command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    done = subprocess.run(
        [REPLICATOR, *args, "--config", str(config)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert expected in done.stderr.splitlines(), done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in config.parent.iterdir()) == before, "it opened something before refusing"


# -- the shipped configs pass ---------------------------------------------------------------------


def _installed(config_text: str, policy_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deploy config with /etc/replicator/ under tmp_path (its policy, a clouds.yaml as ConoHa's
    control panel writes it), and the credentials it names set to dummies."""
    for var in list(os.environ):
        if var.startswith("REPLICATOR_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=ZHVtbXk=;EndpointSuffix=core.windows.net",
    )
    monkeypatch.setenv("REPLICATOR_KEYRING_PASSPHRASE", "dummy passphrase")
    monkeypatch.setenv("REPLICATOR_JOURNAL_PASSWORD", "dummy password")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "policy.toml").write_text(policy_text)
    (etc / "clouds.yaml").write_text(
        "clouds:\n  conoha-tyo1:\n    region_name: tyo1\n    auth:\n"
        "      auth_url: https://identity.tyo1.conoha.io/v3\n      username: u\n"
    )
    receipts.generate(etc / "receipt-signing.pem")  # the configs name their receipt signing key
    assert "/etc/replicator/policy.toml" in config_text and "/etc/replicator/clouds.yaml" in config_text
    path = etc / "replicator.toml"
    path.write_text(config_text.replace("/etc/replicator/", f"{etc}/"))
    return path


def _configmap() -> dict[str, str]:
    (doc,) = [d for d in yaml.safe_load_all(CONFIGMAP.read_text()) if d and d.get("kind") == "ConfigMap"]
    return doc["data"]


SHIPPED = {
    "replicator.toml": lambda: ((DEPLOY / "replicator.toml").read_text(), (DEPLOY / "policy.toml").read_text()),
    "replicator-cluster.toml": lambda: (
        (DEPLOY / "replicator-cluster.toml").read_text(),
        (DEPLOY / "policy.toml").read_text(),
    ),
    "configmap": lambda: (_configmap()["replicator.toml"], _configmap()["policy.toml"]),
}


@pytest.mark.parametrize("pinned", [False, True], ids=["shipped-policy", "pinned-policy"])
@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_configs_pass(tmp_path, monkeypatch, name, pinned):
    config_text, policy_text = SHIPPED[name]()
    if pinned:
        policy_text += PRODUCTION_PINS
    path = _installed(config_text, policy_text, tmp_path, monkeypatch)
    config = load_config(path)
    policy = policy_of(config)
    assert {r.country for r in config.regions.values()} == {"CA", "JP"}
    assert [r.name for r in policy.regions] == (["ca", "jp"] if pinned else [])
