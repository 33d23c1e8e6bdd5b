"""Barbican, which holds the KEK, stopped: a service cannot start, a running one keeps serving.

Theory of operation
    ``replicator serve`` runs as a subprocess (``tests.support.served.Served``) on the embedded
    default's two local regions, its keyring's KEK the stack's test secret in the real Barbican
    behind the real Keystone. The fault is the dev stack's own: ``server_stopped("barbican")``
    (``deploy/dev/stack stop barbican``: connections refused), then ``deploy/dev/stack up`` starts
    it again, whatever the test did.

    * At start the KEK must be fetched: with Barbican stopped ``serve`` exits non-zero at once
      with one line naming the secret and what failed, and no traceback, and ``replicator health``
      says the same (``keyring`` CRIT); with Barbican back the same config starts and
      ``kek_service`` is OK.
    * A running service holds the KEK in memory: with Barbican stopped it keeps serving reads
      and writes (a new customer's key too), and ``/readyz`` answers 200 ``degraded`` with
      ``kek_service`` unreachable; ``ok`` again once Barbican is back.
    * A Barbican that hangs (``server_paused``) costs ``/readyz`` the probe's timeout, not the hang,
      and reads go on.
    * Afterwards every file the service wrote (keyring, journal, audit log, regions) and its
      standard output and error are searched for the KEK in every encoding, and for the Keystone
      password of the cloud that reads it.

The servers are required (``tests.support.stack.stack_env``): without them the tests fail, they never skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml

from keys import generate_token
from replicator.config import load_config
from replicator.embedded import LOCAL_REGIONS, all_scopes, config_text
from replicator.health.readiness import KEK_SERVICE_TIMEOUT
from replicator.runtime import open_keyring
from tests.support.clouds import encodings
from tests.support.eventually import eventually
from tests.support.served import Served, files_under, find, free_port, http, windows
from tests.support.stack import server_paused, server_stopped


def _config(tmp_path, barbican) -> tuple:
    token, digest = generate_token()
    # Not beside the service's working directory: its regions/ there would shadow the package.
    (tmp_path / "var").mkdir()
    path = tmp_path / "var" / "replicator.toml"
    kek = (
        f'barbican_secret = "{barbican.secret}"\nbarbican_cloud = "{barbican.cloud}"\n'
        f'clouds_yaml = "{barbican.clouds_yaml}"'
    )
    path.write_text(config_text("n1", LOCAL_REGIONS, {"dev": (digest, all_scopes())}, kek=kek))
    return path, token


def test_serve_refuses_to_start_while_barbican_is_stopped(tmp_path, barbican):
    config, _ = _config(tmp_path, barbican)
    open_keyring(load_config(config)).close()  # made while Barbican answered: this is a restart
    with server_stopped("barbican"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", "from replicator.cli import main; main()", "serve", "--config", str(config)]
            + ["--host", "127.0.0.1", "--port", str(free_port())],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        took = time.monotonic() - started
        health = _health(config)
    assert done.returncode == 2, done.stderr
    assert (
        f"replicator: cannot start: the keyring did not open: Barbican secret {barbican.secret}: "
        "no answer from the key service (ConnectFailure)"
    ) in done.stderr
    assert "Traceback" not in done.stderr and took < 30
    # `replicator health` says the same, as the keyring's CRIT; no kek_service check without a keyring.
    assert health["keyring"] == {
        "status": "CRIT",
        "detail": f"KeyServiceError: Barbican secret {barbican.secret}: no answer from the key service (ConnectFailure)",
    }
    assert "kek_service" not in health
    served = Served(tmp_path, ["serve", "--config", str(config)]).start()  # Barbican is back: it starts
    served.stop()
    health = _health(config)
    assert health["keyring"]["status"] == "OK" and health["kek_service"]["status"] == "OK"
    assert health["kek_service"]["detail"] == f"barbican secret {barbican.secret} answers (metadata only)"


def _health(config) -> dict[str, dict]:
    """`replicator health --json`'s checks by component (status and detail)."""
    done = subprocess.run(
        [sys.executable, "-c", "from replicator.cli import main; main()", "health", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(done.stdout)
    return {c["component"]: {"status": c["status"], "detail": c["detail"]} for c in report["checks"]}


async def test_a_running_service_keeps_serving_while_barbican_is_stopped(tmp_path, barbican):
    config, token = _config(tmp_path, barbican)
    auth = {"Authorization": f"Bearer {token}"}
    read = {**auth, "X-Purpose": "service"}
    served = Served(tmp_path, ["serve", "--config", str(config)]).start()
    try:
        port = served.port
        assert http(port, "PUT", "/v1/objects/before/account/doc", auth, b"stored before").status == 201
        ready = http(port, "GET", "/readyz").json()
        assert ready["status"] == "ok" and ready["checks"]["kek_service"] == "ok"
        with server_stopped("barbican"):
            got = http(port, "GET", "/v1/objects/before/account/doc", read)
            assert got.status == 200 and got.body == b"stored before"
            # A new customer's data key is made and wrapped under the KEK in memory.
            assert http(port, "PUT", "/v1/objects/during/account/doc", auth, b"stored during").status == 201
            got = http(port, "GET", "/v1/objects/during/account/doc", read)
            assert got.status == 200 and got.body == b"stored during"
            ready = http(port, "GET", "/readyz")
            assert ready.status == 200, ready.body
            assert ready.json()["status"] == "degraded"
            assert (
                ready.json()["checks"]["kek_service"] == "unreachable: no answer from the key service (ConnectFailure)"
            )
            assert {k: v for k, v in ready.json()["checks"].items() if k != "kek_service"} == {
                "region:ca": "ok",
                "region:jp": "ok",
                "journal": "ok",
                "keyring": "ok",
                "audit": "ok",
                "audit_shipping": "ok",
            }
        await eventually(lambda: http(port, "GET", "/readyz").json()["status"] == "ok", timeout=20)
        for customer, body in (("before", b"stored before"), ("during", b"stored during")):
            got = http(port, "GET", f"/v1/objects/{customer}/account/doc", read)
            assert got.status == 200 and got.body == body
    finally:
        served.stop()
    # The KEK never reached a disk or a log; neither did the Keystone password that reads it.
    kek = barbican.kek().fetch()
    clouds = yaml.safe_load(barbican.clouds_yaml.read_text())
    password = clouds["clouds"][barbican.cloud]["auth"]["password"]
    haystacks = {str(p): p.read_bytes() for p in files_under(tmp_path)}
    assert {"keyring.json", "service.stderr", "audit.log"} <= {p.name for p in files_under(tmp_path)}
    assert not find(haystacks, {"the KEK": encodings(kek), "the Keystone password": windows(password)})


def test_a_hanging_barbican_costs_readyz_a_bounded_wait_and_reads_go_on(tmp_path, barbican):
    config, token = _config(tmp_path, barbican)
    read = {"Authorization": f"Bearer {token}", "X-Purpose": "service"}
    served = Served(tmp_path, ["serve", "--config", str(config)]).start()
    try:
        port = served.port
        assert http(port, "PUT", "/v1/objects/c/account/doc", read, b"body").status == 201
        with server_paused("barbican"):  # accepts connections, never answers
            started = time.monotonic()
            got = http(port, "GET", "/v1/objects/c/account/doc", read)
            assert got.status == 200 and got.body == b"body" and time.monotonic() - started < 2
            started = time.monotonic()
            ready = http(port, "GET", "/readyz", timeout=20)
            took = time.monotonic() - started
            assert ready.status == 200 and ready.json()["status"] == "degraded", ready.body
            assert (
                ready.json()["checks"]["kek_service"] == "unreachable: no answer from the key service (ConnectTimeout)"
            )
            assert took < KEK_SERVICE_TIMEOUT + 2  # the probe's own timeout, not the hang's
    finally:
        served.stop()
