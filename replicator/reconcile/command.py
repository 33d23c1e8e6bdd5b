"""``replicator reconcile``: from a config file to a finished run, a JSON report and an exit code.

Exit codes: 0 clean; 1 some actions failed or the run stopped early (both
listed in the report); 2 the run could not start (a config error, the lease
held by another runner, a region down at start).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

from keys import load_policy
from regions import RetryPolicy

from ..config import Config
from .job import CannotRun, DestroyedKeys, Options, run_job
from .partition import scope_prefixes

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


async def reconcile(config: Config, options: Options, *, report_path: Path | None = None,
                    progress: bool = False) -> int:
    """Run the reconciler as configured; write the report; return the exit code."""
    from ..app import open_keyring, open_region
    from ..journal import open_journal

    opened: list = []
    journal = keyring = None
    try:
        try:
            retry = RetryPolicy(attempts=config.limits.retry_attempts, timeout=config.limits.request_timeout)
            order = [config.read_preference] + [r for r in config.regions if r != config.read_preference]
            for name in order:
                opened.append(open_region(name, config.regions[name], retry))
            policy = load_policy(config.policy)
            keyring = await asyncio.to_thread(open_keyring, config)
            journal = None if options.dry_run else open_journal(config.journal)
        except Exception as e:  # anything that stops the run from starting is a configuration problem
            raise CannotRun(f"{type(e).__name__}: {e}") from e
        retention = {name: dc.retention_days for name, dc in policy.classes.items()}
        owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        bar = None
        if progress:
            from .progress import ProgressBar

            bar = ProgressBar(scope_prefixes(options.prefix, *options.partition))
        loop = asyncio.get_running_loop()

        signals: list[int] = []

        def started(reconciler) -> None:  # SIGINT / SIGTERM: finish the running tasks, save, report
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, reconciler.stop, "signal")
                    signals.append(sig)
                except (NotImplementedError, RuntimeError):  # not the main thread
                    pass

        try:
            if bar is not None:
                bar.__enter__()
            report = await run_job(opened[0], opened[1], journal, options=options, owner=owner,
                                   retention=retention, destroyed=DestroyedKeys(keyring.is_destroyed),
                                   on_progress=bar, started=started)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
            for sig in signals:
                loop.remove_signal_handler(sig)
        _write(report.to_json(), report_path)
        return report.exit_code
    except CannotRun as e:
        print(f"replicator: reconcile cannot run: {e}", file=sys.stderr)
        _write({"error": str(e), "exit_code": CANNOT_RUN}, report_path)
        return CANNOT_RUN
    finally:
        for region in opened:
            await region.close()
        if journal is not None:
            await journal.close()
        if keyring is not None:
            keyring.close()
