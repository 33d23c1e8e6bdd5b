"""The `replicator` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from .options import config_option, config_or_exit, var_option


@click.group()
def main() -> None:
    """Encrypted two-region blob replication."""


@main.command()
@config_option()
@click.option("--var", "var_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
              show_default=True, help="Where the embedded default keeps its regions and state.")
@click.option("--host", help="Listen address (default: the config's, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default: the config's, 8700).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds a client has to send a request line and headers (slow-loris bound).")
@click.option("--keepalive-timeout", type=click.FloatRange(min=0.1), default=75.0, show_default=True,
              help="Seconds an idle kept-alive connection stays open.")
@click.option("--body-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds to wait for the next piece of a request body before answering 408.")
@click.option("--max-connections", type=click.IntRange(min=1), default=512, show_default=True,
              help="Open connections; more are answered 503 and closed.")
def serve(config_path: Path | None, var_dir: Path, host: str | None, port: int | None, header_timeout: float,
          keepalive_timeout: float, body_timeout: float, max_connections: int) -> None:
    """Run the service (on two local regions under ./var unless --config is given)."""
    from .app import build_app
    from .config import ConfigError, load_config
    from .embedded import ensure
    from .logs import configure
    from .server import ServerLimits
    from .server import serve as serve_app

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
    limits = ServerLimits(header_timeout=header_timeout, keepalive_timeout=keepalive_timeout,
                          body_timeout=body_timeout, max_connections=max_connections)
    asyncio.run(serve_app(build_app(config), host, port, limits))


@main.command()
@config_option()
@var_option
@click.option("--dry-run", is_flag=True, help="Plan and report; change nothing (no lease, no checkpoint).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Names worked on at once (default: config's, 16).")
@click.option("--max-delete", type=click.IntRange(min=0),
              help="Stop before deleting more than N (each region delete counts).")
@click.option("--resume", is_flag=True, help="Continue after the checkpoint a stopped or crashed run left.")
@click.option("--prefix", default="v1/", show_default=True, help="Only names under this prefix.")
@click.option("--partition", default="1/1", show_default=True,
              help="Work on slice i of n of the customer-tag space (several workers, no overlap).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON report here (default: standard output).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def reconcile(config_path: Path | None, var_dir: Path, dry_run: bool, concurrency: int | None,
              max_delete: int | None, resume: bool, prefix: str, partition: str, report_path: Path | None,
              progress: bool | None) -> None:
    """Bring both regions level: copy, propagate deletes, repair, expire, shred. Exit 0 clean, 1 failures, 2 cannot run."""
    import asyncio

    from .config import ConfigError, load_config
    from .embedded import CONFIG_NAME
    from .logs import configure
    from .reconcile.command import CANNOT_RUN
    from .reconcile.command import reconcile as run
    from .reconcile.job import Options
    from .reconcile.partition import parse_partition

    configure()
    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        part = parse_partition(partition)
    except (ConfigError, ValueError) as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(CANNOT_RUN)
    settings = config.reconcile
    options = Options(dry_run=dry_run, concurrency=concurrency or settings.concurrency,
                      max_delete=max_delete if max_delete is not None else settings.max_delete,
                      resume=resume, prefix=prefix, partition=part, grace_days=settings.tombstone_grace_days,
                      lease_ttl=settings.lease_ttl)
    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(asyncio.run(run(config, options, report_path=report_path, progress=progress)))


@main.command()
@config_option()
@var_option
@click.option("--region", "only", multiple=True, help="Check only this region (repeatable): ca, jp.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", type=click.FloatRange(min=0.1),
              help="Seconds one probe step may take before it is CRIT (default: [health] probe_timeout, 10).")
@click.option("--latency-warn-ms", type=click.FloatRange(min=0),
              help="A region step slower than this is WARN (default: [health] latency_warn_ms, 2000).")
@click.option("--backlog-warn", type=click.IntRange(min=0),
              help="More pending journal rows than this is WARN (default: [health] backlog_warn, 1000).")
@click.option("--oldest-warn-s", type=click.FloatRange(min=0),
              help="An oldest pending row older than this is WARN (default: [health] oldest_warn_s, 3600).")
def health(config_path: Path | None, var_dir: Path, only: tuple[str, ...], as_json: bool, timeout: float | None,
           latency_warn_ms: float | None, backlog_warn: int | None, oldest_warn_s: float | None) -> None:
    """Probe each region, the keyring, the audit log and the journal. Exit 0 OK, 1 WARN, 2 CRIT."""
    import time

    from . import health as h

    config = config_or_exit(config_path, var_dir)  # exit 2, CRIT
    unknown = set(only) - set(config.regions)
    if unknown:
        click.echo(f"replicator: no region {', '.join(sorted(unknown))} (have {', '.join(config.regions)})", err=True)
        sys.exit(h.EXIT[h.CRIT])
    limits = h.Thresholds.from_config(config.health, probe_timeout=timeout, latency_warn_ms=latency_warn_ms,
                                      backlog_warn=backlog_warn, oldest_warn_s=oldest_warn_s)
    started = time.monotonic()
    checks = h.run(config, limits, only)
    if as_json:
        click.echo(h.to_json(checks, time.monotonic() - started))
    else:
        h.print_table(checks)
    h.exit_now(h.EXIT[h.worst(checks)])


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option("Config file whose audit_log to check when no PATH is given.")
@var_option
@click.option("--save-checkpoint", is_flag=True,
              help="If the chain is intact, make its last record the checkpoint `replicator health` verifies "
                   "from (after the log was deliberately replaced or restored). Needs the config, not PATH.")
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
            from .health import reset_audit_checkpoint

            asyncio.run(reset_audit_checkpoint(config, result.head))
            click.echo(f"{path}: `replicator health` now verifies from record {result.head.seq if result.head else 1}")
        return
    if result.first_bad_line is None:  # the file could not be read at all
        click.echo(f"{path}: {result.reason}", err=True)
        sys.exit(2)
    click.echo(f"{path}: BROKEN at line {result.first_bad_line}: {result.reason}", err=True)
    click.echo(f"{path}: lines 1-{result.first_bad_line - 1} verify ({result.records} records); keep the file "
               "as it is for the investigation and compare it with a backup or an anchored checkpoint", err=True)
    sys.exit(1)


@main.group("keys")
def keys_group() -> None:
    """The keyring."""


@keys_group.command("rotate")
@config_option("Config file (default: the embedded default's, under --var); its [keys] opens the keyring.")
@var_option
@click.option("--new-passphrase-env", metavar="VAR",
              help="Environment variable holding the new passphrase (at least 12 characters).")
@click.option("--new-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the new 32-byte KEK.")
@click.option("--generate", is_flag=True, help="Create --new-key-file (32 random bytes, mode 0600) first.")
@click.option("--finish", "finish_", is_flag=True,
              help="Retire the previous KEK once every process runs on the new one (the config must name it).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def keys_rotate(config_path: Path | None, var_dir: Path, new_passphrase_env: str | None, new_key_file: Path | None,
                generate: bool, finish_: bool, as_json: bool) -> None:
    """Rewrap every data key and the index key under a new KEK (one atomic write; objects untouched).

    Running processes go on with the previous KEK until `--finish` retires it.
    The new KEK is named by reference, never typed on the command line. Exit 0 rotated, 2 not rotated."""
    import json

    from keys import KeyringError

    from .config import ConfigError, load_config
    from .embedded import CONFIG_NAME
    from .rotation import RotationError, can_rotate, finish, new_kek, next_steps, rotate

    if finish_:
        try:
            if new_passphrase_env or new_key_file or generate:
                raise RotationError("--finish takes no new KEK: it retires the previous one")
            config = load_config(config_path or var_dir / CONFIG_NAME)
            done = finish(config, say=lambda line: click.echo(line, err=True))
        except (ConfigError, RotationError, KeyringError) as e:
            click.echo(f"replicator: keys rotate --finish: {e}; nothing was finished"
                       if not isinstance(e, ConfigError) else f"replicator: {e}", err=True)
            sys.exit(2)
        if as_json:
            click.echo(json.dumps(done.to_json(), indent=1))
        elif done.version_retired is None:
            click.echo(f"nothing to finish: only KEK version {done.kek_version} opens {done.keyring}")
        else:
            click.echo(f"finished {done.keyring}: KEK version {done.version_retired} retired; only version "
                       f"{done.kek_version} ({done.kek_kind}) opens it now")
        return
    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        can_rotate(config)
        new = new_kek(new_passphrase_env, new_key_file, generate)
        report = rotate(config, new, say=lambda line: click.echo(line, err=True))
    except (ConfigError, RotationError, KeyringError) as e:
        click.echo(f"replicator: keys rotate: {e}; nothing was rotated" if not isinstance(e, ConfigError)
                   else f"replicator: {e}", err=True)
        sys.exit(2)
    steps = next_steps(config, new, new_passphrase_env or str(new_key_file))
    if as_json:
        click.echo(json.dumps({**report.to_json(), "next": steps}, indent=1))
        return
    click.echo(f"rotated {report.keyring}: KEK version {report.old_version} ({report.old_kind}) -> "
               f"{report.new_version} ({report.new_kind})")
    click.echo(f"rewrapped: {report.data_keys_rewrapped} data keys and the index key; "
               f"{report.erased_untouched} erased customers (no key) untouched; "
               f"KEK versions dropped from the file: {', '.join(map(str, report.versions_dropped)) or 'none'}")
    for step in steps:
        click.echo(f"next: {step}")


@main.command()
@click.argument("customer")
@config_option()
@var_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds to sweep the regions before printing the receipt; a sweep still running then "
                   "is resumed by the service at its next start.")
def erase(customer: str, config_path: Path | None, var_dir: Path, yes: bool, wait: float) -> None:
    """Erase CUSTOMER: destroy their key now, then delete their objects in both regions; print the receipt.

    The same path as DELETE /v1/customers/{customer}. Exit 0 done, 1 key destroyed but the sweep still
    running, 2 nothing done."""
    import asyncio
    import json

    from . import errors
    from .config import ConfigError, load_config
    from .embedded import CONFIG_NAME
    from .erase_command import CANNOT_RUN
    from .erase_command import erase as run
    from .names import check_customer

    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        check_customer(customer)
    except (ConfigError, errors.ServiceError) as e:
        click.echo(f"replicator: {getattr(e, 'message', e)}", err=True)
        sys.exit(CANNOT_RUN)
    if not yes:
        try:
            sure = click.confirm(f"Erase customer {customer!r}? Their key is destroyed at once and cannot be "
                                 "recovered; every object of theirs in both regions is deleted", err=True)
        except click.Abort:  # no terminal to answer (end of input): not a yes
            sure = False
        if not sure:
            click.echo("replicator: not erased", err=True)
            sys.exit(CANNOT_RUN)
    try:
        receipt, code = asyncio.run(run(config, customer, wait=wait, say=lambda line: click.echo(line, err=True)))
    except KeyboardInterrupt:
        click.echo("replicator: interrupted; if the key was destroyed, the erasure stays running in the journal "
                   "and the service resumes it at its next start (or run this command again)", err=True)
        sys.exit(1)
    except errors.ServiceError as e:
        click.echo(f"replicator: erase: {e.message}", err=True)
        sys.exit(CANNOT_RUN)
    click.echo(json.dumps(receipt, indent=1))
    sys.exit(code)


# Command groups that live beside what they operate on.
from .audit_export import export_command  # noqa: E402
from .journal.command import journal_group  # noqa: E402
from .work import work_command  # noqa: E402

main.add_command(journal_group)
main.add_command(work_command)
audit.add_command(export_command)
