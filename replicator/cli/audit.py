"""``replicator audit verify|export``: check the audit log's chain; copy records out, for an auditor or an archive.

The records come out as their exact JSON lines (``keys.audit``'s format),
after the whole chain was verified, so an export of the whole log, or of any
span that starts at record 1, passes ``replicator audit verify`` on its own,
and a later span verifies from the record before it. ``--past-retention``
picks the records older than the config's ``audit_retention_months`` (at
least 24): the only ones that may be moved off the host. Nothing is ever
removed from the log by this or any other command.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from replicator.cli.options import config_option, config_or_exit, var_option

_WHEN = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


@click.command("export")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option("Config file whose audit_log (and audit_retention_months) to use when no PATH is given.")
@var_option
@click.option("--since", type=_WHEN, help="First instant to export (UTC), inclusive.")
@click.option("--until", type=_WHEN, help="Instant to stop at (UTC), exclusive.")
@click.option(
    "--past-retention",
    is_flag=True,
    help="Only records older than the retention (audit_retention_months; 24 with a bare PATH).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (a new file, mode 0600) instead of standard output.",
)
def export_command(
    path: Path | None,
    config_path: Path | None,
    var_dir: Path,
    since: datetime | None,
    until: datetime | None,
    past_retention: bool,
    out_path: Path | None,
) -> None:
    """Write audit records as their exact JSON lines, after verifying the chain. Exit 0, 1 broken, 2 cannot run."""
    from keys.audit import RETENTION_MONTHS, export, retention_cutoff

    months = RETENTION_MONTHS
    if path is None:
        config = config_or_exit(config_path, var_dir)
        path, months = config.audit_log, config.audit_retention_months
    since = since.replace(tzinfo=UTC) if since else None
    until = until.replace(tzinfo=UTC) if until else None
    if past_retention:
        cutoff = retention_cutoff(datetime.now(UTC), months)
        until = min(until, cutoff) if until else cutoff
    records = export(path, since=since, until=until)
    try:
        first = next(records, None)  # the whole chain is verified before the first record comes out
    except ValueError as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"replicator: cannot read {path}: {e.strerror}", err=True)
        sys.exit(2)
    try:
        out = os.fdopen(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") if out_path else None
    except OSError as e:
        click.echo(f"replicator: cannot create {out_path}: {e.strerror}", err=True)
        sys.exit(2)
    sink, count = out or sys.stdout.buffer, 0
    try:
        for line in [first] if first is not None else []:
            sink.write(line)
            count += 1
        for line in records:
            sink.write(line)
            count += 1
    finally:
        sink.close() if out else sink.flush()
    click.echo(f"{path}: exported {count} records", err=True)


@click.group("audit")
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option("Config file whose audit_log to check when no PATH is given.")
@var_option
@click.option(
    "--save-checkpoint",
    is_flag=True,
    help="If the chain is intact, make its last record the checkpoint `replicator health` verifies "
    "from (after the log was deliberately replaced or restored). Needs the config, not PATH.",
)
def audit_verify(path: Path | None, config_path: Path | None, var_dir: Path, save_checkpoint: bool) -> None:
    """Check the whole hash chain of PATH (default: the config's audit_log); name the first removed, edited,
    reordered or inserted record. Exit 0 intact, 1 broken, 2 cannot read."""
    from keys.audit import verify

    config = None
    if save_checkpoint and path is not None:
        click.echo("replicator: --save-checkpoint works on the config's audit_log; leave PATH out", err=True)
        sys.exit(2)
    if path is None:
        config = config_or_exit(config_path, var_dir)
        path = config.audit_log
    result = verify(path)
    if result.ok:
        click.echo(f"{path}: OK, {result.records} records, chain intact")
        if save_checkpoint:
            from replicator.health.probes import reset_audit_checkpoint

            assert config is not None  # --save-checkpoint without PATH: the config's log
            asyncio.run(reset_audit_checkpoint(config, result.head))
            click.echo(f"{path}: `replicator health` now verifies from record {result.head.seq if result.head else 1}")
        return
    if result.first_bad_line is None:  # the file could not be read at all
        click.echo(f"{path}: {result.reason}", err=True)
        sys.exit(2)
    click.echo(f"{path}: BROKEN at line {result.first_bad_line}: {result.reason}", err=True)
    click.echo(
        f"{path}: lines 1-{result.first_bad_line - 1} verify ({result.records} records); keep the file "
        "as it is for the investigation and compare it with a backup or an anchored checkpoint",
        err=True,
    )
    sys.exit(1)


audit.add_command(export_command)
