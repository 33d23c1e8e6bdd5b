"""``replicator work``: replication workers alone, on the configured regions and journal.

The service runs the same workers beside its API; this command runs only
them, so several processes (hosts, pods) can share one PostgreSQL journal's
backlog. Each claims batches under a lease (``--lease``): a process that dies,
even by SIGKILL, holds its rows only until that lease lapses, then another
process takes them. SIGTERM or SIGINT finishes the batch in hand and exits 0.

Exit codes: 0 stopped (a signal, or ``--until-empty`` and the journal is
empty); 2 could not start (config, regions, the journal unreachable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from replicator.cli.options import config_option, config_or_exit, var_option
from replicator.cli.slo import serve_metrics
from replicator.config import Config
from replicator.errors import ServiceUnavailable
from replicator.journal import JournalError
from replicator.observe.lag import record_lag
from replicator.observe.metrics import Metrics
from replicator.replication import Workers
from replicator.retention import keep_of
from replicator.runtime import Runtime

log = logging.getLogger("replicator.cli.work")
CANNOT_RUN = 2


async def work(
    config: Config,
    *,
    concurrency: int,
    lease: float,
    idle_wait: float,
    until_empty: bool,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Carry out journal rows until ``stop`` is set (or, with ``until_empty``, no row is left)."""
    stop = stop or asyncio.Event()
    async with Runtime(config, metrics=metrics) as runtime:
        try:
            regions, journal = runtime.regions, runtime.journal
            await journal.backlog()  # reachable (and migrated) before we say we started
            locks = await runtime.locks()  # a copy holds the name in the whole cluster, as a write does
        except (JournalError, ValueError, OSError, ServiceUnavailable) as e:
            click.echo(f"replicator: work cannot start: {e}", err=True)
            return CANNOT_RUN
        owner = f"{config.node_id}-{socket.gethostname()}-{os.getpid()}"
        workers = Workers(
            journal,
            regions,
            locks,
            runtime.metrics,
            owner=owner,
            concurrency=concurrency,
            lease=lease,
            idle_wait=idle_wait,
            keep_days=keep_of(runtime.policy),
        )
        served = None
        if metrics_port is not None:
            try:
                served = await serve_metrics(
                    runtime.metrics,
                    metrics_port,
                    metrics_host,
                    refresh=lambda: record_lag(runtime.metrics, journal, regions),
                )
            except OSError as e:
                click.echo(f"replicator: work cannot serve metrics on {metrics_host}:{metrics_port}: {e}", err=True)
                return CANNOT_RUN
        click.echo(f"replicator: worker {owner} started", err=True)
        try:
            while not stop.is_set():
                try:
                    if await workers.run_once():
                        continue
                    if until_empty and (await journal.backlog()).pending == 0:
                        break
                except JournalError as e:  # the database went away: wait for it, never give the work up
                    log.warning("journal unavailable", extra={"error": type(e).__name__, "detail": str(e)})
                try:
                    await asyncio.wait_for(stop.wait(), idle_wait)
                except TimeoutError:
                    pass
        finally:
            if served is not None:
                await served.cleanup()
        click.echo(f"replicator: worker {owner} stopped", err=True)
        return 0


@click.command("work")
@config_option()
@var_option
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    help="Rows carried out at once (default: the config's limits.region_concurrency).",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds a claimed batch stays ours; a dead process's rows return after this.",
)
@click.option(
    "--idle-wait",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls when nothing is due.",
)
@click.option("--until-empty", is_flag=True, help="Exit once the journal holds no row at all.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address /metrics binds to.")
def work_command(
    config_path: Path | None,
    var_dir: Path,
    concurrency: int | None,
    lease: float,
    idle_wait: float,
    until_empty: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run only the replication workers (several processes may share a PostgreSQL journal)."""
    from replicator.observe.logs import configure

    configure()
    config = config_or_exit(config_path, var_dir)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await work(
            config,
            concurrency=concurrency or config.limits.region_concurrency,
            lease=lease,
            idle_wait=idle_wait,
            until_empty=until_empty,
            stop=stop,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )

    sys.exit(asyncio.run(main()))
