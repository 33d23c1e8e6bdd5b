"""``replicator reconcile``: from a config file to a finished run, a JSON report and an exit code.

Exit codes: 0 clean; 1 some actions failed or the run stopped early (both
listed in the report); 2 the run could not start (a config error, the lease
held by another runner, a region down at start, its audit log unwritable).

What it removed, durably. Every run's report is also kept, a new file per run
in ``[reconcile] report_dir`` (``replicator.reconcile.report.keep``). A run
that changes things keeps an audit chain of its own
(``replicator.cli.operator_audit``, role ``reconcile-<report id>``: one
chain per run, so a CronJob pod's fresh disk never has to go on from a chain
another pod shipped): one record per
object removed from a region (``reconcile.<expire|shred|purge|delete>``, its
tags and class, outcome ``removed:<region>``), then one ``reconcile.run``
record whose outcome names the exit code and the kept report
(``exit-<code>:report-<id>``); the chain is shipped to both regions before
the command exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import click

from keys import AuditLog, AuditUnavailable
from replicator.cli.operator_audit import open_cli_log, ship_cli_log
from replicator.cli.options import config_option, var_option
from replicator.cli.slo import write_reconcile_textfile
from replicator.config import Config
from replicator.layout import ObjectPath, parse_path
from replicator.observe.metrics import Metrics
from replicator.reconcile.executor import Reconciler
from replicator.reconcile.job import CannotRun, DestroyedKeys, Options, run_job
from replicator.reconcile.partition import scope_prefixes
from replicator.reconcile.planner import Action
from replicator.reconcile.report import keep, kept_name
from replicator.retention import keep_of, retention_of
from replicator.runtime import Runtime

CLEAN, FAILED, CANNOT_RUN = 0, 1, 2


def _write(report: dict, path: Path | None) -> None:
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


async def run_reconcile(
    config: Config,
    options: Options,
    *,
    report_path: Path | None = None,
    progress: bool = False,
    metrics: Metrics | None = None,
    metrics_file: Path | None = None,
) -> int:
    """Run the reconciler as configured; write the report (and ``metrics_file``); return the exit code."""
    started = time.time()
    code, counts, unfinished = await _run(config, options, report_path=report_path, progress=progress, metrics=metrics)
    if metrics_file is not None:
        write_reconcile_textfile(
            metrics_file, exit_code=code, started=started, counts=counts, kek_rotation_unfinished=unfinished
        )
    return code


def _role(report_id: str) -> str:
    """The run's audit chain (``operator_audit``): one per run, named as its kept report. A run on a fresh
    disk (a CronJob's pod) so starts a chain of its own, never one that would have to go on from a chain
    another pod shipped; partitions on one host run at once."""
    return f"reconcile-{report_id}"


def _removal_record(audit: AuditLog) -> Callable[[Action, str], Awaitable[None]]:
    """``on_removed``: one audit record per object removed from a region (tags only, from its path)."""

    async def removed(action: Action, region: str) -> None:
        try:
            where = parse_path(action.name)
            path = where if isinstance(where, ObjectPath) else where.object
            tags = {"customer_tag": path.customer_tag, "data_class": path.data_class, "name_tag": path.name_tag}
        except ValueError:  # not a path the replicator makes (cannot be planned): record what was done
            tags = {}
        await audit.append_async(
            principal="reconcile", action=f"reconcile.{action.kind}", outcome=f"removed:{region}", **tags
        )

    return removed


async def _run(
    config: Config, options: Options, *, report_path: Path | None, progress: bool, metrics: Metrics | None
) -> tuple[int, dict[str, dict[str, int]], bool | None]:
    """The run: its exit code, its action counts, and whether a KEK rotation is left unfinished."""
    unfinished: bool | None = None
    report_id = kept_name(time.time(), options.partition)
    audit: AuditLog | None = None
    async with AsyncExitStack() as stack:
        try:
            try:
                runtime = await stack.enter_async_context(Runtime(config, metrics=metrics))
                a, b = runtime.regions.values()
                policy = runtime.policy
                keyring = await runtime.keys()
                unfinished = getattr(keyring, "unfinished_rotation", None) is not None
                journal = None if options.dry_run else runtime.journal
                if not options.dry_run:  # a run that may remove anything records it, or does not run
                    audit = await open_cli_log(runtime, role=_role(report_id))
            except Exception as e:  # anything that stops the run from starting is a configuration problem
                raise CannotRun(f"{type(e).__name__}: {e}") from e
            retention = retention_of(policy)
            owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
            bar = None
            if progress:
                from replicator.reconcile.progress import ProgressBar

                bar = ProgressBar(scope_prefixes(options.prefix, *options.partition))
            loop = asyncio.get_running_loop()

            signals: list[int] = []

            def started(reconciler: Reconciler) -> None:  # SIGINT / SIGTERM: finish the running tasks, save, report
                for sig in (signal.SIGINT, signal.SIGTERM):
                    try:
                        loop.add_signal_handler(sig, reconciler.stop, "signal")
                        signals.append(sig)
                    except (NotImplementedError, RuntimeError):  # not the main thread
                        pass

            try:
                if bar is not None:
                    bar.__enter__()
                report = await run_job(
                    a,
                    b,
                    journal,
                    options=options,
                    owner=owner,
                    retention=retention,
                    keep=keep_of(policy),
                    destroyed=DestroyedKeys(keyring.is_destroyed),
                    on_progress=bar,
                    started=started,
                    on_removed=_removal_record(audit) if audit is not None else None,
                )
            finally:
                if bar is not None:
                    bar.__exit__(None, None, None)
                for sig in signals:
                    loop.remove_signal_handler(sig)
            document = {**report.to_json(), "report_id": report_id}
            _kept(document, config, report_id)
            _write(document, report_path)
            if audit is not None:
                await _summary(runtime, audit, report_id, f"exit-{report.exit_code}:report-{report_id}")
            return report.exit_code, report.counts, unfinished
        except CannotRun as e:
            print(f"replicator: reconcile cannot run: {e}", file=sys.stderr)
            document = {"error": str(e), "exit_code": CANNOT_RUN, "report_id": report_id}
            _kept(document, config, report_id)
            _write(document, report_path)
            return CANNOT_RUN, {}, unfinished


def _kept(document: dict, config: Config, report_id: str) -> None:
    try:
        keep(document, config.reconcile.report_dir, report_id)
    except OSError as e:  # the run is done; its report still goes to --report or standard output
        print(f"replicator: reconcile: cannot keep the report in {config.reconcile.report_dir}: {e}", file=sys.stderr)


async def _summary(runtime: Runtime, audit: AuditLog, report_id: str, outcome: str) -> None:
    """The run's own record (naming its kept report), then the run's chain shipped to both regions."""
    try:
        await audit.append_async(principal="reconcile", action="reconcile.run", outcome=outcome)
    except (AuditUnavailable, ValueError) as e:
        print(f"replicator: reconcile: the run's audit record was not written: {e}", file=sys.stderr)
    shipped = await ship_cli_log(runtime, audit, role=_role(report_id))
    if shipped != "ok":
        print(
            f"replicator: reconcile: shipping its audit records is {shipped}"
            " (its chain stays beside the node's log; `replicator audit verify` names what is missing)",
            file=sys.stderr,
        )


@click.command("reconcile")
@config_option()
@var_option
@click.option("--dry-run", is_flag=True, help="Plan and report; change nothing (no lease, no checkpoint).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Names worked on at once (default: config's, 16).")
@click.option(
    "--max-delete", type=click.IntRange(min=0), help="Stop before deleting more than N (each region delete counts)."
)
@click.option("--resume", is_flag=True, help="Continue after the checkpoint a stopped or crashed run left.")
@click.option("--prefix", default="v1/", show_default=True, help="Only names under this prefix.")
@click.option(
    "--partition",
    default="1/1",
    show_default=True,
    help="Work on slice i of n of the customer-tag space (several workers, no overlap).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON report here (default: standard output).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's figures here for node_exporter's textfile collector (replaced atomically).",
)
def reconcile(
    config_path: Path | None,
    var_dir: Path,
    dry_run: bool,
    concurrency: int | None,
    max_delete: int | None,
    resume: bool,
    prefix: str,
    partition: str,
    report_path: Path | None,
    progress: bool | None,
    metrics_file: Path | None,
) -> None:
    """Bring both regions level: copy, propagate deletes, repair, expire, shred.

    Exit 0 clean, 1 failures, 2 cannot run."""
    import asyncio

    from replicator.config import ConfigError, load_config
    from replicator.embedded import CONFIG_NAME
    from replicator.observe.logs import configure
    from replicator.reconcile.job import Options
    from replicator.reconcile.partition import parse_partition

    configure()
    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        part = parse_partition(partition)
    except (ConfigError, ValueError) as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(CANNOT_RUN)
    settings = config.reconcile
    options = Options(
        dry_run=dry_run,
        concurrency=concurrency or settings.concurrency,
        max_delete=max_delete if max_delete is not None else settings.max_delete,
        resume=resume,
        prefix=prefix,
        partition=part,
        grace_days=settings.tombstone_grace_days,
        lease_ttl=settings.lease_ttl,
    )
    if progress is None:
        progress = sys.stderr.isatty()
    sys.exit(
        asyncio.run(
            run_reconcile(config, options, report_path=report_path, progress=progress, metrics_file=metrics_file)
        )
    )
