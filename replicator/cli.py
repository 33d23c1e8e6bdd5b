"""The `replicator` command."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700  # the dev stack's Swift proxy has 8080


@click.group()
def main() -> None:
    """Encrypted two-region blob replication."""


@main.command()
@click.option("--var", "var_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
              show_default=True, help="Where the embedded default keeps its regions and state.")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def serve(var_dir: Path, host: str, port: int) -> None:
    """Run the service on the embedded default: two local regions under ./var."""
    from aiohttp import web

    from .app import build_app

    click.echo(f"replicator: serving on http://{host}:{port} (regions under {var_dir.resolve()})")
    web.run_app(build_app(var_dir), host=host, port=port, print=None)
