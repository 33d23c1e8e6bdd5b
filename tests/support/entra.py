"""Azurite in OAuth mode over HTTPS, and Entra ID-shaped tokens for it.

Azurite with ``--oauth basic`` (only over HTTPS: ``--cert``/``--key``) takes a
bearer token when its issuer starts with ``https://sts.windows.net/``, its
audience is Storage's (``https://storage.azure.com``, or the account's
``blob.core.windows.net`` URL) and it has not expired (``exp``/``nbf``); it
does not check the signature. ``MintedToken`` is a TokenCredential that mints
such tokens (RS256, signed with a key made here, as Entra's are), with a
chosen lifetime and audience; the Azure driver uses it through the same
``BlobServiceClient(account_url, credential=...)`` path as azure-identity's
credentials. The certificate Azurite serves is made here with
``cryptography``: a CA and a leaf for 127.0.0.1, the CA handed to the driver
as ``ca_file``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .served import free_port

ACCOUNT = "devstoreaccount1"
STORAGE_AUDIENCE = "https://storage.azure.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # any GUID: Azurite checks only the issuer's prefix


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class MintedToken(AsyncTokenCredential):
    """Tokens as Entra ID issues them for Storage, ``lifetime`` seconds long (negative: already expired)."""

    kind = "minted"

    def __init__(self, *, lifetime: float = 3600, audience: str = STORAGE_AUDIENCE) -> None:
        self.lifetime = lifetime
        self.audience = audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issued: list[AccessToken] = []
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    def mint(self) -> AccessToken:
        now = int(time.time())
        exp = now + int(self.lifetime)
        header = {"typ": "JWT", "alg": "RS256", "kid": "test"}
        claims = {
            "aud": self.audience,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": min(now, exp) - 60,
            "nbf": min(now, exp) - 60,
            "exp": exp,
            "oid": str(uuid.uuid4()),
            "tid": TENANT,
            "sub": "replicator-test",
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = AccessToken(f"{signing}.{_b64(signature)}", exp)
        self.issued.append(token)
        return token

    async def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return self.mint()

    async def close(self) -> None:
        self.closed = True

    async def __aexit__(self, *args) -> None:
        await self.close()


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, PEM files in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replicator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].chmod(0o600)
    return paths


@dataclass
class AzuriteOAuth:
    """One Azurite blob service on 127.0.0.1 over HTTPS with ``--oauth basic``."""

    account_url: str
    ca_file: Path
    cert_file: Path  # the server's certificate and key, for other local HTTPS servers of the test
    key_file: Path
    process: subprocess.Popen
    log: Path

    @property
    def connection_string(self) -> str:
        """The well-known development account's key over the same HTTPS endpoint (for set-up only)."""
        key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        return f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={key};BlobEndpoint={self.account_url};"

    @classmethod
    def start(cls, azurite_bin: str, directory: Path, timeout: float = 30.0) -> AzuriteOAuth:
        ca, cert, key = make_tls(directory)
        port = free_port()
        log = directory / "azurite-oauth.log"
        data = directory / "data"
        data.mkdir()
        cmd = [azurite_bin, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
               "--oauth", "basic", "--cert", str(cert), "--key", str(key),
               "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip
        with open(log, "wb") as out:
            process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        context = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                        break  # the TLS handshake with our CA's certificate worked
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"Azurite over HTTPS did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        return cls(f"https://127.0.0.1:{port}/{ACCOUNT}", ca, cert, key, process, log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


class IdentityEndpoint:
    """A local stand-in for the two Entra ID endpoints azure-identity talks to, minting tokens Azurite takes.

    - ``GET /msi/token`` with ``X-IDENTITY-HEADER``: App Service's managed identity endpoint
      (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``), as ``ManagedIdentityCredential`` calls it.
    - ``POST /<tenant>/oauth2/v2.0/token``: the client credentials grant, with a client secret (a
      service principal) or a client assertion (workload identity's federated token); only the
      secrets and assertions in ``accepted`` are taken, others get Entra's 401 ``invalid_client``.

    Served over HTTPS with ``make_tls``'s certificate (an Entra authority is https only). Every
    request is recorded in ``seen``; ``lifetime`` is the tokens' ``expires_in``.
    """

    def __init__(self, cert: Path, key: Path, *, lifetime: int = 3600) -> None:
        self.cert, self.key = cert, key
        self.lifetime = lifetime
        self.header = "identity-header-" + uuid.uuid4().hex
        self.accepted: set[str] = set()
        self.seen: list[dict[str, str]] = []
        self.minter = MintedToken()
        self.url = ""
        self._runner = None

    def _token(self) -> dict:
        self.minter.lifetime = self.lifetime
        token = self.minter.mint()
        return {"access_token": token.token, "expires_in": self.lifetime, "token_type": "Bearer"}

    async def start(self) -> IdentityEndpoint:
        from aiohttp import web

        async def managed(request: web.Request) -> web.Response:
            self.seen.append(
                {"kind": "managed", **request.query, "header": request.headers.get("X-IDENTITY-HEADER", "")}
            )
            if request.headers.get("X-IDENTITY-HEADER") != self.header:
                return web.json_response({"error": "unauthorized"}, status=401)
            answer = self._token()
            answer["expires_on"] = str(int(time.time()) + self.lifetime)
            answer["resource"] = request.query.get("resource", "")
            return web.json_response(answer)

        async def client_credentials(request: web.Request) -> web.Response:
            form = dict(await request.post())
            self.seen.append({"kind": "token", "tenant": request.match_info["tenant"], **form})
            proof = form.get("client_secret") or form.get("client_assertion")
            if proof not in self.accepted:
                return web.json_response(
                    {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                    status=401,
                )
            return web.json_response(self._token())

        app = web.Application()
        app.router.add_get("/msi/token", managed)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", client_credentials)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=context).start()
        self.url = f"https://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
