"""``replicator health``: probe every dependency and grade it OK / WARN / CRIT (Nagios exit codes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from replicator.cli.options import config_option, config_or_exit, var_option


@click.command("health")
@config_option()
@var_option
@click.option("--region", "only", multiple=True, help="Check only this region (repeatable): ca, jp.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    help="Seconds one probe step may take before it is CRIT (default: [health] probe_timeout, 10).",
)
@click.option(
    "--latency-warn-ms",
    type=click.FloatRange(min=0),
    help="A region step slower than this is WARN (default: [health] latency_warn_ms, 2000).",
)
@click.option(
    "--backlog-warn",
    type=click.IntRange(min=0),
    help="More pending journal rows than this is WARN (default: [health] backlog_warn, 1000).",
)
@click.option(
    "--oldest-warn-s",
    type=click.FloatRange(min=0),
    help="An oldest pending row older than this is WARN (default: [health] oldest_warn_s, 3600).",
)
def health(
    config_path: Path | None,
    var_dir: Path,
    only: tuple[str, ...],
    as_json: bool,
    timeout: float | None,
    latency_warn_ms: float | None,
    backlog_warn: int | None,
    oldest_warn_s: float | None,
) -> None:
    """Probe each region, the keyring, the audit log and the journal. Exit 0 OK, 1 WARN, 2 CRIT."""
    import time

    from replicator.health import probes as h

    config = config_or_exit(config_path, var_dir)  # exit 2, CRIT
    unknown = set(only) - set(config.regions)
    if unknown:
        click.echo(f"replicator: no region {', '.join(sorted(unknown))} (have {', '.join(config.regions)})", err=True)
        sys.exit(h.EXIT[h.CRIT])
    limits = h.Thresholds.from_config(
        config.health,
        probe_timeout=timeout,
        latency_warn_ms=latency_warn_ms,
        backlog_warn=backlog_warn,
        oldest_warn_s=oldest_warn_s,
    )
    started = time.monotonic()
    checks = h.run(config, limits, only)
    if as_json:
        click.echo(h.to_json(checks, time.monotonic() - started))
    else:
        h.print_table(checks)
    h.exit_now(h.EXIT[h.worst(checks)])
