"""``replicator serve`` over TLS and mutual TLS, with real handshakes: certificates made here with
``cryptography`` (a CA, a second CA nobody trusts, valid and expired server and client certificates),
the service as a subprocess on the embedded default (no dev-stack server needed), and a standard-library
HTTPS client.

* A client that trusts the CA talks to the server; one that trusts another CA, or meets an expired
  server certificate, refuses the handshake.
* With a client CA: an expired client certificate, or one another CA issued, never gets an answer;
  with ``client_auth = "required"``, neither does a client without a certificate.
* A principal bound to a client certificate (subject, or a SAN): its token alone is 401, with another
  certificate 403, with its own certificate it works; an unbound principal needs no certificate.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from keys import generate_token
from replicator.embedded import ensure
from tests.support.certs import Issued, issue, make_ca
from tests.support.served import Served

SCOPES = ["write:account", "read:account:service", "meta:account"]
SPIFFE = "spiffe://tests/batch"


@dataclass
class Pki:
    ca: Issued
    server: Issued
    expired_server: Issued
    web: Issued  # the client certificate principal "bound" is bound to (by subject)
    other: Issued  # the same CA, another subject
    batch: Issued  # carries the SAN principal "bound-san" is bound to
    expired_client: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust
    stranger_ca: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = make_ca(d, "Test CA"), make_ca(d / "other", "Stranger CA")
    return Pki(
        ca=ca,
        server=issue(ca, d, "replicator", server=True),
        expired_server=issue(ca, d, "replicator", server=True, expired=True, stem="expired-server"),
        web=issue(ca, d, "web"),
        other=issue(ca, d, "other"),
        batch=issue(ca, d, "batch", sans=(x509.UniformResourceIdentifier(SPIFFE),)),
        expired_client=issue(ca, d, "web", expired=True, stem="expired-web"),
        stranger=issue(stranger_ca, d / "other", "web"),
        stranger_ca=stranger_ca,
    )


@dataclass
class Tokens:
    dev: str
    bound: str
    bound_san: str


class TlsServed(Served):
    """``Served`` whose readiness check speaks HTTPS (trusting ``ca``, presenting ``client`` if given)."""

    def __init__(self, directory: Path, args: list[str], ca: Path, client: Issued | None = None):
        super().__init__(directory, args)
        self.ca, self.client = ca, client

    def _wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if call(self.port, "GET", "/healthz", ca=self.ca, cert=self.client)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False


def call(
    port: int,
    method: str,
    path: str,
    *,
    ca: Path,
    cert: Issued | None = None,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _configure(var: Path) -> tuple[Path, Tokens]:
    config, dev = ensure(var)
    assert dev is not None
    bound, bound_hash = generate_token()
    bound_san, san_hash = generate_token()
    scopes = ", ".join(json.dumps(s) for s in SCOPES)
    with config.open("a") as f:
        f.write(
            f'\n[[principals]]\nname = "bound"\ntoken_sha256 = "{bound_hash}"\nscopes = [{scopes}]\n'
            'client_subject = "CN=web,O=Replicator Tests"\n'
            f'\n[[principals]]\nname = "bound-san"\ntoken_sha256 = "{san_hash}"\nscopes = [{scopes}]\n'
            f'client_san = "URI:{SPIFFE}"\n'
        )
    return config, Tokens(dev, bound, bound_san)


def _tls_args(config: Path, server: Issued, ca: Issued | None, mode: str = "optional") -> list[str]:
    args = ["serve", "--config", str(config), "--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    if ca is not None:
        args += ["--tls-client-ca", str(ca.cert), "--tls-client-auth", mode]
    return args


@pytest.fixture(scope="module")
def mtls(tmp_path_factory, pki):
    """One server, client certificates optional (principals bound to one need it)."""
    d = tmp_path_factory.mktemp("mtls")
    config, tokens = _configure(d / "var")
    served = TlsServed(d, _tls_args(config, pki.server, pki.ca), pki.ca.cert).start()
    try:
        yield served, tokens
    finally:
        served.stop()


def test_a_client_trusting_the_ca_is_served_over_https(mtls, pki):
    served, tokens = mtls
    assert call(served.port, "GET", "/healthz", ca=pki.ca.cert)[0] == 200
    status, body = call(served.port, "PUT", "/v1/objects/c1/account/a", ca=pki.ca.cert, token=tokens.dev, body=b"x")
    assert status == 201, body
    assert b"serving on https://" in served.stdout_path.read_bytes()


def test_a_client_trusting_another_ca_refuses_the_server(mtls, pki):
    served, _ = mtls
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        call(served.port, "GET", "/healthz", ca=pki.stranger_ca.cert)


def test_an_expired_server_certificate_is_refused_then_renewed_without_a_restart(tmp_path, pki):
    config, _ = _configure(tmp_path / "var")
    live = Issued(tmp_path / "server.crt", tmp_path / "server.key", pki.expired_server.certificate, None)
    shutil.copy(pki.expired_server.cert, live.cert)
    shutil.copy(pki.expired_server.key, live.key)
    served = Served(tmp_path, _tls_args(config, live, None))
    served._wait_up = lambda timeout: _listening(served, timeout)  # no handshake can succeed
    served.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            call(served.port, "GET", "/healthz", ca=pki.ca.cert)
        assert b"the TLS certificate has expired" in served.stderr_path.read_bytes()
        # The renewed pair in place, then SIGHUP (systemctl reload): the next handshake uses it.
        shutil.copy(pki.server.key, live.key)
        shutil.copy(pki.server.cert, live.cert)
        served.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert call(served.port, "GET", "/healthz", ca=pki.ca.cert)[0] == 200
                break
            except ssl.SSLCertVerificationError:
                assert time.monotonic() < deadline, "the renewed certificate was not picked up"
                time.sleep(0.1)
        assert served.process.poll() is None
    finally:
        served.stop()


def _listening(served: Served, timeout: float) -> bool:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", served.port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.mark.parametrize("client", ["expired_client", "stranger"])
def test_a_client_certificate_that_fails_verification_gets_no_answer(mtls, pki, client):
    served, tokens = mtls
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(
            served.port,
            "GET",
            "/v1/objects/c1?class=account",
            ca=pki.ca.cert,
            cert=getattr(pki, client),
            token=tokens.dev,
        )


def test_an_unbound_principal_needs_no_client_certificate(mtls, pki):
    served, tokens = mtls
    status, _ = call(served.port, "GET", "/v1/objects/c1?class=account", ca=pki.ca.cert, token=tokens.dev)
    assert status == 200


def test_a_principal_bound_by_subject_needs_its_own_certificate(mtls, pki):
    served, tokens = mtls
    path = "/v1/objects/c2/account/bound"
    status, body = call(served.port, "PUT", path, ca=pki.ca.cert, token=tokens.bound, body=b"hi")
    assert status == 401, body
    error = json.loads(body)
    assert error["error"] == "unauthorized"
    assert "principal 'bound' is bound to a client certificate" in error["message"]
    assert tokens.bound not in body.decode()

    status, body = call(served.port, "PUT", path, ca=pki.ca.cert, cert=pki.other, token=tokens.bound, body=b"hi")
    assert status == 403, body
    assert "CN=other" in json.loads(body)["message"] and "'bound'" in json.loads(body)["message"]

    status, body = call(served.port, "PUT", path, ca=pki.ca.cert, cert=pki.web, token=tokens.bound, body=b"hi")
    assert status == 201, body
    status, body = call(
        served.port, "GET", path, ca=pki.ca.cert, cert=pki.web, token=tokens.bound, headers={"X-Purpose": "service"}
    )
    assert (status, body) == (200, b"hi")


def test_a_principal_bound_by_san_needs_a_certificate_carrying_it(mtls, pki):
    served, tokens = mtls
    path = "/v1/objects/c3/account/san"
    status, body = call(served.port, "PUT", path, ca=pki.ca.cert, cert=pki.web, token=tokens.bound_san, body=b"x")
    assert status == 403, body
    assert SPIFFE in json.loads(body)["message"]
    status, body = call(served.port, "PUT", path, ca=pki.ca.cert, cert=pki.batch, token=tokens.bound_san, body=b"x")
    assert status == 201, body


def test_a_certificate_without_the_token_is_not_enough(mtls, pki):
    served, _ = mtls
    status, body = call(served.port, "GET", "/v1/objects/c2?class=account", ca=pki.ca.cert, cert=pki.web)
    assert status == 401, body


def test_required_client_certificates_refuse_a_client_without_one(tmp_path, pki):
    config, tokens = _configure(tmp_path / "var")
    served = TlsServed(tmp_path, _tls_args(config, pki.server, pki.ca, "required"), pki.ca.cert, pki.other).start()
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call(served.port, "GET", "/healthz", ca=pki.ca.cert)
        status, _ = call(
            served.port, "GET", "/v1/objects/c1?class=account", ca=pki.ca.cert, cert=pki.other, token=tokens.dev
        )
        assert status == 200
    finally:
        served.stop()


def test_a_key_that_does_not_load_is_a_clear_start_error_without_the_key(tmp_path, pki):
    config, _ = _configure(tmp_path / "var")
    args = ["serve", "--config", str(config), "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.web.key)]
    done = subprocess.run(
        [sys.executable, "-c", "from replicator.cli import main; main()", *args, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert str(pki.web.key) in done.stderr and "cannot load the TLS certificate" in done.stderr
    key_body = pki.web.key.read_text().splitlines()[1]
    assert key_body not in done.stderr + done.stdout
