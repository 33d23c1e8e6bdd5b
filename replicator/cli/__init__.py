"""The ``replicator`` command: one module per command, as litestream's ``cmd/``.

Each module defines its click command and the code that runs it; this file
only gathers them under one group.
"""

from __future__ import annotations

import click

from replicator.cli.audit import audit
from replicator.cli.erase import erase
from replicator.cli.health import health
from replicator.cli.journal import journal_group
from replicator.cli.keys import keys_group
from replicator.cli.reconcile import reconcile
from replicator.cli.serve import serve
from replicator.cli.tokens import tokens_group
from replicator.cli.work import work_command


@click.group()
def main() -> None:
    """Encrypted two-region blob replication."""


for command in (serve, work_command, reconcile, health, audit, keys_group, erase, journal_group, tokens_group):
    main.add_command(command)
