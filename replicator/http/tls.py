"""HTTPS for ``serve``: the server's TLS context, re-read on SIGHUP, and the client certificate a
request came with.

The private key is read from its file by OpenSSL and held by the context only; no message here quotes
it (OpenSSL's own errors name the failing step, not the bytes). With a client CA, OpenSSL verifies a
presented client certificate in the handshake (chain to the CA, validity dates): a certificate that
fails never reaches a handler, whether client certificates are optional or required, so a handler
that sees one may trust it.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from cryptography import x509

log = logging.getLogger("replicator.http.tls")


class TlsError(Exception):
    """The certificate, key or client CA cannot be used; the message names the file, never its content."""


class ServerTls:
    """The server's TLS context for a certificate chain and key, and an optional client CA."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None = None,
        client_auth: str = "optional",
    ):
        self.cert_file, self.key_file, self.client_ca_file = Path(cert_file), Path(key_file), client_ca_file
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(client_ca_file))
            except (ssl.SSLError, OSError) as e:
                raise TlsError(f"cannot load the client CA {client_ca_file}: {_reason(e)}") from None
            context.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
        self.context = context
        self.load()

    def load(self) -> None:
        """(Re)read the certificate and key; handshakes after this use them (SIGHUP: a renewed
        certificate without a restart). ``TlsError`` leaves the previous pair in use."""
        _warn_if_readable(self.key_file)
        try:
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, OSError) as e:
            raise TlsError(
                f"cannot load the TLS certificate {self.cert_file} with key {self.key_file}: {_reason(e)}"
            ) from None
        try:
            leaf = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        except ValueError:
            return  # OpenSSL took it; only our expiry note cannot be made
        if leaf.not_valid_after_utc <= datetime.now(UTC):
            log.warning(
                "the TLS certificate has expired: clients will refuse it",
                extra={"cert_file": str(self.cert_file), "not_after": leaf.not_valid_after_utc.isoformat()},
            )

    def reload(self) -> None:
        try:
            self.load()
            log.info("TLS certificate re-read", extra={"cert_file": str(self.cert_file)})
        except TlsError as e:
            log.error("TLS certificate not re-read; the previous one stays", extra={"error": str(e)})


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return getattr(e, "reason", None) or type(e).__name__


def _warn_if_readable(key_file: Path) -> None:
    try:
        mode = os.stat(key_file).st_mode
    except OSError:
        return  # load_cert_chain says what is wrong
    if mode & stat.S_IRWXO:  # group-readable is the usual root:replicator 0640 (or a Secret's 0440)
        log.warning("the TLS key file is readable by every user (chmod 600 or 640)", extra={"key_file": str(key_file)})


def client_certificate(request: web.BaseRequest) -> x509.Certificate | None:
    """The client certificate the connection's handshake verified, or None (plain HTTP, no client CA,
    or none presented)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return _parse(der) if der else None


@functools.lru_cache(maxsize=256)
def _parse(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def san_values(cert: x509.Certificate) -> set[str]:
    """The certificate's subject alternative names as ``DNS:…``, ``URI:…``, ``email:…``, ``IP:…``."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    kinds = (
        ("DNS", x509.DNSName),
        ("URI", x509.UniformResourceIdentifier),
        ("email", x509.RFC822Name),
        ("IP", x509.IPAddress),
    )
    return {f"{kind}:{value}" for kind, cls in kinds for value in ext.get_values_for_type(cls)}
