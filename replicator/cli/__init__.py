"""The ``replicator`` command: one module per command, as litestream's ``cmd/``.

Each module defines its click command and the code that runs it; this file
only gathers them under one group.
"""

from __future__ import annotations

import click

from replicator.cli.audit import audit
from replicator.cli.erase import erase, verify_receipt
from replicator.cli.health import health
from replicator.cli.journal import journal_group
from replicator.cli.keys import keys_group
from replicator.cli.reconcile import reconcile
from replicator.cli.serve import serve
from replicator.cli.signing import new_signing_key
from replicator.cli.tokens import tokens_group
from replicator.cli.work import work_command


class _Main(click.Group):
    def resolve_command(self, ctx: click.Context, args: list[str]):
        # `erase CUSTOMER` takes any customer id, so `erase verify-receipt FILE` is routed here.
        if args[:2] == ["erase", "verify-receipt"]:
            return "erase verify-receipt", verify_receipt, args[2:]
        return super().resolve_command(ctx, args)


@click.group(cls=_Main)
def main() -> None:
    """Encrypted two-region blob replication."""


for command in (serve, work_command, reconcile, health, audit, keys_group, erase, journal_group, tokens_group):
    main.add_command(command)
keys_group.add_command(new_signing_key)
