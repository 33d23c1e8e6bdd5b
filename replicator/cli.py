"""The `replicator` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Encrypted two-region blob replication."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (default: the embedded default under --var).")
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
    from .server import ServerLimits
    from .server import serve as serve_app
    from .config import ConfigError, load_config
    from .embedded import ensure

    from .logs import configure

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
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (default: the embedded default's, under --var).")
@click.option("--var", "var_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
              show_default=True, help="Where the embedded default keeps its config.")
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
    from .reconcile.command import CANNOT_RUN, reconcile as run
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
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (default: the embedded default's, under --var).")
@click.option("--var", "var_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
              show_default=True, help="Where the embedded default keeps its config.")
@click.option("--region", "only", multiple=True, help="Check only this region (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds one probe step may take before the region is CRIT.")
@click.option("--latency-warn-ms", type=float, default=2000.0, show_default=True)
@click.option("--backlog-warn", type=int, default=1000, show_default=True)
@click.option("--oldest-warn-s", type=float, default=3600.0, show_default=True)
def health(config_path: Path | None, var_dir: Path, only: tuple[str, ...], as_json: bool, timeout: float,
           latency_warn_ms: float, backlog_warn: int, oldest_warn_s: float) -> None:
    """Probe each region, the keyring, the audit log and the journal. Exit 0 OK, 1 WARN, 2 CRIT."""
    import asyncio
    import json

    from regions import RetryPolicy

    from .app import open_keyring, open_region
    from .config import ConfigError, load_config
    from .embedded import CONFIG_NAME
    from .health import CRIT, EXIT, Check, Thresholds, run_checks, worst
    from .journal import open_journal

    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
    except ConfigError as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(EXIT[CRIT])
    unknown = set(only) - set(config.regions)
    if unknown:
        click.echo(f"replicator: no region {', '.join(sorted(unknown))} (have {', '.join(config.regions)})", err=True)
        sys.exit(EXIT[CRIT])
    limits = Thresholds(probe_timeout=timeout, latency_warn_ms=latency_warn_ms, backlog_warn=backlog_warn,
                        oldest_warn_s=oldest_warn_s)

    async def run() -> list[Check]:
        retry = RetryPolicy(attempts=1, timeout=timeout)
        regions = {n: open_region(n, c, retry) for n, c in config.regions.items() if not only or n in only}
        journal = open_journal(config.journal)
        try:
            try:
                keyring = await asyncio.to_thread(open_keyring, config)
            except Exception as e:  # reported as the keyring check
                keyring = _Locked(e)
            return await run_checks(regions, keyring, config.audit_log, journal, limits)
        finally:
            await journal.close()
            for region in regions.values():
                await region.close()

    checks = asyncio.run(run())
    status = worst(checks)
    if as_json:
        click.echo(json.dumps({"status": status, "checks": [vars(c) for c in checks]}, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        colours = {"OK": "green", "WARN": "yellow", "CRIT": "red"}
        table = Table(title=f"replicator health: {status}")
        for column in ("component", "status", "detail", "figures"):
            table.add_column(column)
        for c in checks:
            table.add_row(c.component, f"[{colours[c.status]}]{c.status}[/]", c.detail,
                          " ".join(f"{k}={v}" for k, v in c.figures.items()))
        Console().print(table)
    sys.exit(EXIT[status])


class _Locked:
    """Stands in for a keyring that would not open, so its check reports why."""

    def __init__(self, error: Exception):
        self.error = error

    def check(self) -> None:
        raise self.error


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def audit_verify(path: Path) -> None:
    """Check the hash chain; name the first broken, removed, reordered or inserted record. Exit 1 if broken."""
    from keys.audit import verify

    result = verify(path)
    if result.ok:
        click.echo(f"{path}: OK, {result.records} records, chain intact")
        return
    click.echo(f"{path}: BROKEN at line {result.first_bad_line}: {result.reason}", err=True)
    sys.exit(1)
