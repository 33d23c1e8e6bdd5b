"""``replicator serve``: the HTTP service (the embedded default under ./var unless --config)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from replicator.cli.options import config_option

if TYPE_CHECKING:
    from replicator.config import Config, TlsConfig
    from replicator.http.server import ServerLimits
    from replicator.http.tls import ServerTls


@click.command("serve")
@config_option()
@click.option(
    "--var",
    "var_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where the embedded default keeps its regions and state.",
)
@click.option("--host", help="Listen address (default: the config's, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default: the config's, 8700).")
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds a client has to send a request line and headers (slow-loris bound).",
)
@click.option(
    "--keepalive-timeout",
    type=click.FloatRange(min=0.1),
    default=75.0,
    show_default=True,
    help="Seconds an idle kept-alive connection stays open.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the next piece of a request body before answering 408.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Open connections; more are answered 503 and closed.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Service processes sharing the port, one per core (needs a PostgreSQL journal and key store).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve HTTPS with this certificate chain (PEM; overrides the config's [tls] cert_file).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The certificate's private key file (PEM, 0600), by path only.",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Accept client certificates issued by these CA certificates (mutual TLS).",
)
@click.option(
    "--tls-client-auth",
    type=click.Choice(["optional", "required"]),
    help="With a client CA: whether every client must present a certificate (default: the config's, optional).",
)
def serve(
    config_path: Path | None,
    var_dir: Path,
    host: str | None,
    port: int | None,
    header_timeout: float,
    keepalive_timeout: float,
    body_timeout: float,
    max_connections: int,
    processes: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    tls_client_auth: str | None,
) -> None:
    """Run the service (on two local regions under ./var unless --config is given)."""
    from replicator.config import ConfigError, load_config
    from replicator.embedded import ensure
    from replicator.http.server import ServerLimits
    from replicator.http.tls import TlsError
    from replicator.observe.logs import configure

    configure()
    if config_path is None:
        config_path, token = ensure(var_dir)
        if token:
            click.echo(f"replicator: created the embedded default in {var_dir.resolve()}")
            # Only to a terminal: standard output is often a log (systemd, a container, CI), and the
            # token's one place at rest is var/dev-token (0600).
            if sys.stdout.isatty():
                click.echo(f"replicator: development token (shown once; also in {var_dir / 'dev-token'}):")
                click.echo(f"  {token}")
            else:
                click.echo(f"replicator: the development token is in {var_dir / 'dev-token'}")
    try:
        config = load_config(config_path)
    except ConfigError as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(2)
    if config.erasure_receipt_key is None:  # allowed, but a production config names one
        click.echo("replicator: warning: no erasure_receipt_key: erasure receipts are unsigned", err=True)
    host, port = host or config.host, port or config.port
    try:
        tls = server_tls(config.tls, tls_cert, tls_key, tls_client_ca, tls_client_auth)
    except (click.UsageError, TlsError) as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(2)
    limits = ServerLimits(
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
    )
    if processes > 1:
        from replicator.http.processes import cannot_share, process_config, run_processes

        why = cannot_share(config)
        try:
            configs = [process_config(config, i) for i in range(1, processes + 1)]
        except ValueError as e:
            why = why or str(e)
        if why:
            click.echo(f"replicator: --processes {processes}: {why}", err=True)
            sys.exit(2)
        click.echo(f"replicator: serving on {'https' if tls else 'http'}://{host}:{port} ({processes} processes)")
        sys.exit(run_processes(processes, lambda i: _serve_one(configs[i - 1], host, port, limits, tls, True)))
    click.echo(f"replicator: serving on {'https' if tls else 'http'}://{host}:{port}", nl=True)
    sys.exit(_serve_one(config, host, port, limits, tls, False))


def _serve_one(
    config: Config, host: str, port: int, limits: ServerLimits, tls: ServerTls | None, reuse_port: bool
) -> int:
    """Serve ``config`` until stopped; the exit status (2: it could not start)."""
    from keys import KeyringError
    from replicator.http.app import build_app
    from replicator.http.server import StartupFailed
    from replicator.http.server import serve as serve_app

    try:
        asyncio.run(serve_app(build_app(config), host, port, limits, tls, reuse_port=reuse_port))
    except StartupFailed as e:
        cause = e.__cause__
        if isinstance(cause, KeyringError):  # the KEK source is down or wrong: say which, not a traceback
            logging.getLogger("replicator.serve").error("keyring did not open", extra={"error": str(cause)})
            click.echo(f"replicator: cannot start: the keyring did not open: {cause}", err=True)
        else:
            click.echo(f"replicator: cannot start: {e}", err=True)
        return 2
    return 0


def server_tls(
    config: TlsConfig | None,
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
    client_auth: str | None,
) -> ServerTls | None:
    """The TLS the flags and the config's ``[tls]`` ask for (flags win), or None for plain HTTP."""
    from replicator.http.tls import ServerTls

    cert = cert or (config.cert_file if config else None)
    key = key or (config.key_file if config else None)
    client_ca = client_ca or (config.client_ca_file if config else None)
    client_auth = client_auth or (config.client_auth if config else "optional")
    if cert is None and key is None:
        if client_ca is not None:
            raise click.UsageError("a client CA needs a server certificate and key (--tls-cert, --tls-key)")
        return None
    if cert is None or key is None:
        raise click.UsageError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    if client_auth == "required" and client_ca is None:
        raise click.UsageError("--tls-client-auth required needs a client CA (--tls-client-ca)")
    return ServerTls(cert, key, client_ca, client_auth)
