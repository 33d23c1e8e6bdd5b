"""What every command that runs on a config shares: its ``--config`` and ``--var`` options, and
``config_or_exit``, which loads the config they name."""

from __future__ import annotations

import sys
from pathlib import Path

import click

DEFAULT_CONFIG_HELP = "Config file (default: the embedded default's, under --var)."

var_option = click.option(
    "--var",
    "var_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where the embedded default keeps its config.",
)


def config_option(help: str = DEFAULT_CONFIG_HELP):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), help=help)


def config_or_exit(config_path: Path | None, var_dir: Path):
    """The config a command runs on: ``--config``, else the embedded default's under ``--var``.
    A missing or invalid one is a message on stderr and exit 2 ("cannot run") for every command."""
    from replicator.config import ConfigError, load_config
    from replicator.embedded import CONFIG_NAME

    try:
        return load_config(config_path or var_dir / CONFIG_NAME)
    except ConfigError as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(2)
