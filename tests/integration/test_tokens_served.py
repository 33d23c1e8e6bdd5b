"""``replicator tokens`` beside a running ``replicator serve`` (one node, the embedded default's SQLite
journal file): a token made by the command works at once, a revoked or expired one is 401 saying why
(never echoing it), with no restart; the policy file's token keeps working; the expiry gauge is served."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.served import Served, http

CLI = [sys.executable, "-c", "from replicator.cli import main; main()"]


def tokens(var: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "tokens", *args, "--var", str(var)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    service = Served(d, ["serve", "--var", str(d / "var")]).start()
    try:
        yield service, d / "var"
    finally:
        service.stop()


def put(port: int, token: str, name: str):
    return http(port, "PUT", f"/v1/objects/c1/account/{name}", {"Authorization": f"Bearer {token}"}, b"hello")


def until(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_a_token_is_made_used_listed_and_revoked_without_a_restart(served):
    service, var = served
    made = tokens(var, "create", "--principal", "batch", "--scope", "write:account", "--scope", "meta:account",
                  "--expires-in", "30d")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rpl_") and "\n" not in token
    token_id = made.stderr.split("token ", 1)[1].split()[0]
    assert token_id.startswith("tok_")

    assert until(lambda: put(service.port, token, "a").status == 201)  # picked up within the poll

    listed = tokens(var, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [t for t in json.loads(listed.stdout) if t["id"] == token_id]
    assert (entry["principal"], entry["state"], entry["scopes"]) == (
        "batch",
        "active",
        ["meta:account", "write:account"],
    )
    assert token not in listed.stdout and "sha256" not in listed.stdout

    metrics = http(service.port, "GET", "/metrics").body.decode()
    assert 'replicator_token_expires_timestamp_seconds{principal="batch"}' in metrics

    revoked = tokens(var, "revoke", token_id)
    assert revoked.returncode == 0 and f"revoked {token_id} (principal 'batch')" in revoked.stdout
    started = time.monotonic()
    answer = until(lambda: (r := put(service.port, token, "b")).status == 401 and r)
    assert answer, "the revoked token was still accepted after 5 s"
    assert time.monotonic() - started < 2.5  # polled every second
    error = answer.json()
    assert (
        error["error"] == "unauthorized"
        and f"the token {token_id} (principal 'batch') was revoked at" in error["message"]
    )
    assert token not in answer.body.decode()
    assert answer.header("WWW-Authenticate") == "Bearer"

    assert until(lambda: 'principal="batch"' not in http(service.port, "GET", "/metrics").body.decode())
    assert tokens(var, "revoke", "tok_nope").returncode == 1


def test_an_expired_token_is_refused_saying_so(served):
    service, var = served
    made = tokens(var, "create", "--principal", "short", "--scope", "write:account", "--expires-in", "6s")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert until(lambda: put(service.port, token, "c").status == 201)
    answer = until(lambda: (r := put(service.port, token, "d")).status == 401 and r, timeout=12)
    assert answer and "expired at" in answer.json()["message"]


def test_the_policy_file_token_keeps_working_and_bad_input_is_refused(served):
    service, var = served
    dev = (var / "dev-token").read_text().strip()
    assert put(service.port, dev, "e").status == 201
    clash = tokens(var, "create", "--principal", "dev", "--scope", "write:account")
    assert clash.returncode == 2 and "in the policy file" in clash.stderr
    bad = tokens(var, "create", "--principal", "x", "--scope", "read:account:billing")
    assert bad.returncode == 2 and "may not decrypt class 'account'" in bad.stderr
    unknown = put(service.port, "rpl_" + "A" * 43, "f")
    assert unknown.status == 401 and unknown.json()["message"] == "the token is not valid"
