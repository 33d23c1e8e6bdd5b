"""Every `openstack` command docs/operations.md shows, run as written against the dev stack.

The commands are read from the document (inline code and shell blocks), so
the runbooks stay true: a command the CLI refuses, a cloud the document
never explains, or a placeholder this test does not know fails here. They
run in document order, with ``bash`` (the document's ``$(...)`` included),
through the openstack CLI of the ``ops`` extra, with ``OS_CLIENT_CONFIG_FILE``
naming one clouds.yaml that holds the clouds the document names:

- ``conoha-tyo1``: what a node uses, a Keystone application credential of
  the dev stack's customer user (made here);
- ``conoha-owner``: that user with its password (an operator's machine);
- ``replicator-kek``: the KEK's reader (the dev stack's ``devstack-kek``).

A credential the document creates replaces ``conoha-tyo1``'s, as the
rotation runbook says to, so its later commands use the new one after the
old one is revoked. What the commands make is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.appcred import AppCredentials
from tests.support.clouds import RawSwift
from tests.support.stack import stack_env, stack_fixture

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
OPENSTACK = Path(sys.executable).parent / "openstack"
CLOUDS = {"conoha-tyo1", "conoha-owner", "replicator-kek"}
PLACEHOLDER = re.compile(r"<[^<>]+>")


def doc_commands(text: str) -> list[str]:
    """Every `openstack ...` command of a Markdown document, in order, each on one line."""
    commands: list[tuple[int, str]] = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
    for block in fenced.finditer(text):
        body = block.group(1).replace("\\\n", " ")
        for offset, line in enumerate(body.splitlines()):
            if line.strip().startswith("openstack "):
                commands.append((block.start() + offset, line.strip()))
    prose = fenced.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets, drop the blocks
    for span in re.finditer(r"`(openstack [^`]+)`", prose):
        commands.append((span.start(), " ".join(span.group(1).split())))
    return [c for _, c in sorted(commands)]


def test_the_document_shows_commands_this_test_knows():
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    assert len(commands) >= 8, commands
    for command in commands:
        cloud = re.search(r"--os-cloud (\S+)", command)
        assert cloud and cloud.group(1) in CLOUDS, f"docs/operations.md: name a known --os-cloud in: {command}"


@stack_fixture
def cli_env(tmp_path):
    """The environment the commands run in: the CLI, one clouds.yaml, and what the placeholders stand for."""
    if not OPENSTACK.is_file():
        pytest.fail(f"{OPENSTACK} is missing: install the ops extra (`pip install -e '.[ops]'`; make test does)")
    stack_clouds = stack_env("REPLICATOR_TEST_CLOUDS_YAML")
    creds = AppCredentials(
        stack_clouds, stack_env("REPLICATOR_TEST_SWIFT_CLOUD"), stack_env("REPLICATOR_TEST_KEYSTONE_URL")
    )
    creds.delete_named("replicator-jp-")  # names the runbook makes (one a day): a killed run's are in the way
    clouds = yaml.safe_load(Path(stack_clouds).read_text())["clouds"]
    old = creds.create(f"replicator-jp-old-{os.urandom(3).hex()}", expires_in=3600)
    path = tmp_path / "clouds.yaml"
    appcred = yaml.safe_load(creds.write_cloud(tmp_path / "appcred.yaml", old, cloud="conoha-tyo1").read_text())

    def write(tyo1: dict) -> None:
        every = {
            "conoha-tyo1": tyo1,
            "conoha-owner": clouds[stack_env("REPLICATOR_TEST_SWIFT_CLOUD")],
            "replicator-kek": clouds[stack_env("REPLICATOR_TEST_BARBICAN_CLOUD")],
        }
        path.write_text(yaml.safe_dump({"clouds": every}))
        path.chmod(0o600)

    write(appcred["clouds"]["conoha-tyo1"])
    container = f"cli-{os.urandom(4).hex()}"
    swift = RawSwift(stack_clouds, stack_env("REPLICATOR_TEST_SWIFT_CLOUD"))
    for c in (container, f"{container}_segments"):  # what the segment runbook lists
        swift.request("PUT", c)
    swift.request("PUT", f"{container}_segments", "up/0000", data=b"x", headers={"Content-Type": "text/plain"})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
        "OS_CLIENT_CONFIG_FILE": str(path),
        "PATH": f"{OPENSTACK.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    places = {
        "<container>": container,
        "<old id>": old.id,
        "<secret URL>": stack_env("REPLICATOR_TEST_BARBICAN_SECRET"),
    }
    try:
        yield env, places, write, creds, old
    finally:
        creds.delete_all()
        for c in (f"{container}_segments", container):
            for item in json.loads(swift.request("GET", c, query="format=json")[2] or b"[]"):
                swift.request("DELETE", c, item["name"])
            swift.request("DELETE", c)


def test_every_openstack_command_of_the_runbooks_runs(cli_env):
    env, places, write, creds, old = cli_env
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    ran, made_secrets = [], []
    try:
        for command in commands:
            line = command
            for placeholder, value in places.items():
                line = line.replace(placeholder, value)
            assert not PLACEHOLDER.search(line), f"docs/operations.md: unknown placeholder in: {command}"
            done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"docs/operations.md: `{command}` failed:\n{done.stderr[-2000:]}"
            ran.append(command)
            if " application credential create " in line:
                made = json.loads(done.stdout)
                creds.made.append(made["ID"])
                # The runbook's next step: the node's clouds.yaml gets the new credential.
                write(
                    {
                        "auth_type": "v3applicationcredential",
                        "auth": {
                            "auth_url": stack_env("REPLICATOR_TEST_KEYSTONE_URL"),
                            "application_credential_id": made["ID"],
                            "application_credential_secret": made["Secret"],
                        },
                        "region_name": "RegionOne",
                        "interface": "public",
                        "identity_api_version": 3,
                    }
                )
                assert made["Expires At"] and [r["name"] for r in made["Roles"]][:1] == ["member"]
            if " application credential delete " in line:
                creds.made.remove(old.id)
            if " secret store " in line:
                made_secrets.append(re.search(r"https?://\S+/v1/secrets/[0-9a-f-]+", done.stdout).group(0))
    finally:
        for ref in made_secrets:
            subprocess.run(["bash", "-c", f"openstack --os-cloud replicator-kek secret delete {ref}"], env=env)
    assert ran == commands
    assert made_secrets, "the KEK runbook's `secret store` was not among the commands"
    # The credential the runbook revoked is refused from now on.
    revoked = subprocess.run(
        ["bash", "-c", "openstack --os-cloud conoha-owner application credential show " + old.id],
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode != 0
