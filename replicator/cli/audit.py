"""``replicator audit verify|export|who-accessed``: check the audit log's chain; copy records out, for an
auditor or an archive; list every access to one customer's data from every node's chain.

The records come out as their exact JSON lines (``keys.audit``'s format),
after the whole chain was verified, so an export of the whole log, or of any
span that starts at record 1, passes ``replicator audit verify`` on its own,
and a later span verifies from the record before it. ``--past-retention``
picks the records older than the config's ``audit_retention_months`` (at
least 24): the only ones that may be moved off the host. Nothing is ever
removed from the log by this or any other command.

The chain is keyed (``keys.audit``): both commands open the key provider the
config names to get the audit key, and then also require a keyed record (every
node writes one from its first start with the key), so a log re-chained with a
guessed key, or rewritten in the old unkeyed format, is named at its first bad
record. A bare PATH without ``--config`` checks the links only, and cannot
vouch for keyed records (exit 2).

``who-accessed CUSTOMER`` maps the id to its tag through the key provider and
gathers that tag's records from every node's chain shipped to both regions and
from this node's log (``replicator.replication.audit_history``: each chain
verified first, a broken one named and its records from the break on left
out, a record held in several places counted once), sorted by time.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from replicator.cli.options import config_option, config_or_exit, var_option

if TYPE_CHECKING:
    from keys.audit import AuditKey
    from replicator.config import Config

_WHEN = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])


def audit_key_or_exit(config: Config) -> AuditKey:
    """The deployment's audit key, from the key provider the config names (exit 2 if it cannot open)."""
    from keys import KeyringError
    from replicator.runtime import Runtime

    async def key() -> AuditKey:
        async with Runtime(config) as runtime:
            return (await runtime.keys(create=False)).audit_key()

    try:
        return asyncio.run(key())
    except (KeyringError, OSError) as e:
        click.echo(f"replicator: cannot open the key provider for the audit key: {e}", err=True)
        sys.exit(2)


def _config_and_key(
    path: Path | None, config_path: Path | None, var_dir: Path
) -> tuple[Path, Config | None, AuditKey | None]:
    """The log to read (PATH, else the config's), the config and the audit key (None for a bare PATH)."""
    if path is not None and config_path is None:
        return path, None, None
    config = config_or_exit(config_path, var_dir)
    return path or config.audit_log, config, audit_key_or_exit(config)


@click.command("export")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option(
    "Config file whose audit_log (and audit_retention_months) to use when no PATH is given, and whose key "
    "provider holds the audit key."
)
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
    path, config, key = _config_and_key(path, config_path, var_dir)
    if config is not None:
        months = config.audit_retention_months
    since = since.replace(tzinfo=UTC) if since else None
    until = until.replace(tzinfo=UTC) if until else None
    if past_retention:
        cutoff = retention_cutoff(datetime.now(UTC), months)
        until = min(until, cutoff) if until else cutoff
    records = export(path, since=since, until=until, key=key, require_keyed=key is not None)
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
@config_option(
    "Config file whose audit_log to check when no PATH is given, and whose key provider holds the audit key."
)
@var_option
@click.option(
    "--save-checkpoint",
    is_flag=True,
    help="If the chain is intact, make its last record the checkpoint `replicator health` verifies "
    "from (after the log was deliberately replaced or restored). Needs the config, not PATH.",
)
@click.option(
    "--node-log",
    "node_logs",
    multiple=True,
    metavar="NODE=PATH",
    help="Another node's local audit log to check against what it shipped (repeatable).",
)
@click.option("--local-only", is_flag=True, help="Check the local log alone, not the copies shipped to the regions.")
def audit_verify(
    path: Path | None,
    config_path: Path | None,
    var_dir: Path,
    save_checkpoint: bool,
    node_logs: tuple[str, ...],
    local_only: bool,
) -> None:
    """Check the whole keyed chain of PATH (default: the config's audit_log) under the audit key; name the first
    removed, edited, reordered, inserted or re-chained record. Without PATH, also check every node's chain
    shipped to both regions, and this node's log (and each --node-log) against it: an edited, truncated,
    deleted-segment or re-chained log is named by node and first bad record. Exit 0 intact, 1 broken,
    2 cannot read or check."""
    from keys.audit import verify

    logs = dict(_node_log(spec) for spec in node_logs)
    if (save_checkpoint or logs) and path is not None:
        click.echo("replicator: --save-checkpoint and --node-log work on the config's log; leave PATH out", err=True)
        sys.exit(2)
    regions_too = path is None and not local_only
    own_log = path is None  # the config's: the commands' chain beside it is checked too
    path, config, key = _config_and_key(path, config_path, var_dir)
    result = verify(path, key=key, require_keyed=key is not None)
    if result.ok and result.unchecked:
        click.echo(
            f"{path}: links intact, but {result.unchecked} keyed records need the audit key: give --config",
            err=True,
        )
        sys.exit(2)
    if result.ok:
        keyed = f" ({result.keyed} keyed under {key.key_id})" if key is not None else " (unkeyed)"
        click.echo(f"{path}: OK, {result.records} records{keyed}, chain intact")
        if save_checkpoint:
            from replicator.health.probes import reset_audit_checkpoint

            assert config is not None  # --save-checkpoint without PATH: the config's log
            asyncio.run(reset_audit_checkpoint(config, result.head))
            click.echo(f"{path}: `replicator health` now verifies from record {result.head.seq if result.head else 1}")
        commands = _commands_log(config, key) if own_log and config is not None and key is not None else {}
        if regions_too:
            assert config is not None and key is not None
            _check_shipped(config, key, {config.node_id: path, **commands, **logs})
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


def _commands_log(config: Config, key: AuditKey) -> dict[str, Path]:
    """The commands' own chains beside the node's (``operator_audit``), verified too; exit 1 if one is broken."""
    from keys.audit import verify
    from replicator.cli.operator_audit import command_logs

    found = command_logs(config)
    for path in found.values():
        result = verify(path, key=key, require_keyed=True)
        if not result.ok:
            click.echo(f"{path}: BROKEN at line {result.first_bad_line}: {result.reason}", err=True)
            sys.exit(1)
        click.echo(f"{path}: OK, {result.records} records ({result.keyed} keyed under {key.key_id}), chain intact")
    return found


def _node_log(spec: str) -> tuple[str, Path]:
    node, sep, where = spec.partition("=")
    if not sep or not node or not where:
        raise click.BadParameter(f"{spec!r} is not NODE=PATH", param_hint="--node-log")
    return node, Path(where)


def _check_shipped(config: Config, key: AuditKey, logs: dict[str, Path]) -> None:
    """Every node's chain in the regions, and the given local logs against it; exit 1 on a finding."""
    from replicator.replication.audit_check import check_nodes
    from replicator.runtime import Runtime

    async def check():
        async with Runtime(config) as runtime:
            return await check_nodes(runtime.regions, key, logs)

    findings, held = asyncio.run(check())
    for node, seq in sorted(held.items()):
        click.echo(f"node {node}: every region holds records 1-{seq}" if seq else f"node {node}: nothing shipped yet")
    for finding in findings:
        click.echo(f"BROKEN: {finding}", err=True)
    if any(f.seq is not None for f in findings):
        sys.exit(1)
    if findings:  # only regions that could not be read
        sys.exit(2)


audit.add_command(export_command)


@audit.command("who-accessed")
@click.argument("customer")
@config_option("Config whose regions hold the shipped chains, whose key provider gives the tag and the audit key.")
@var_option
@click.option("--since", type=_WHEN, help="Only accesses at or after this instant (UTC).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: accesses and findings.")
def who_accessed(customer: str, config_path: Path | None, var_dir: Path, since: datetime | None, as_json: bool) -> None:
    """Every recorded access to CUSTOMER's data (reads, writes, listings, deletes, denials, exports,
    erasures), from every node's chain shipped to both regions and this node's local log, each chain
    verified under the audit key first; one line per access, by time. A broken chain is named and its
    records after the break left out. Exit 0 every chain intact, 1 a chain broken, 2 cannot read or check."""
    import json

    from replicator import errors
    from replicator.paths.names import check_customer
    from replicator.replication.audit_history import customer_history
    from replicator.runtime import Runtime

    try:
        check_customer(customer)
    except errors.ServiceError as e:
        click.echo(f"replicator: {e.message}", err=True)
        sys.exit(2)
    config = config_or_exit(config_path, var_dir)
    key = audit_key_or_exit(config)

    async def gather():
        async with Runtime(config) as runtime:
            tag = (await runtime.keys(create=False)).tagger().customer_tag(customer)
            local = (config.node_id, config.audit_log) if config.audit_log.exists() else None
            return await customer_history(
                runtime.regions, key, tag, local=local, since=since.replace(tzinfo=UTC) if since else None
            )

    history = asyncio.run(gather())
    if as_json:
        doc = {"accesses": [a.to_json() for a in history.accesses], "findings": [str(f) for f in history.findings]}
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(f"{'time':27}  {'node':8}  {'principal':20}  {'action':10}  {'class':8}  {'purpose':14}  outcome")
        for a in history.accesses:
            click.echo(
                f"{a.time:27}  {a.node:8}  {a.principal:20}  {a.action:10}  {a.data_class or '-':8}  "
                f"{a.purpose or '-':14}  {a.outcome}"
            )
        click.echo(f"{len(history.accesses)} accesses", err=True)
    for finding in history.findings:
        click.echo(f"BROKEN: {finding}" if finding.seq is not None else f"UNREAD: {finding}", err=True)
    if history.broken:
        sys.exit(1)
    if history.findings:
        sys.exit(2)
