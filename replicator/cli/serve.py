"""``replicator serve``: the HTTP service (the embedded default under ./var unless --config)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from replicator.cli.options import config_option


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
def serve(
    config_path: Path | None,
    var_dir: Path,
    host: str | None,
    port: int | None,
    header_timeout: float,
    keepalive_timeout: float,
    body_timeout: float,
    max_connections: int,
) -> None:
    """Run the service (on two local regions under ./var unless --config is given)."""
    from keys import KeyringError
    from replicator.config import ConfigError, load_config
    from replicator.embedded import ensure
    from replicator.http.app import build_app
    from replicator.http.server import ServerLimits, StartupFailed
    from replicator.http.server import serve as serve_app
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
    host, port = host or config.host, port or config.port
    click.echo(f"replicator: serving on http://{host}:{port}", nl=True)
    limits = ServerLimits(
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
    )
    try:
        asyncio.run(serve_app(build_app(config), host, port, limits))
    except StartupFailed as e:
        cause = e.__cause__
        if isinstance(cause, KeyringError):  # the KEK source is down or wrong: say which, not a traceback
            logging.getLogger("replicator.serve").error("keyring did not open", extra={"error": str(cause)})
            click.echo(f"replicator: cannot start: the keyring did not open: {cause}", err=True)
        else:
            click.echo(f"replicator: cannot start: {e}", err=True)
        sys.exit(2)
