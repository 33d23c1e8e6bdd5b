"""``serve --processes N``: N service processes on one host, one listening port, the cluster's shared state.

One Python process uses one core for what it decrypts, hashes and parses.
With N processes, each binds the port with ``SO_REUSEPORT`` and the kernel
spreads connections over them. They are N nodes of a cluster on one host,
and are safe together for the reasons a cluster is (``docs/operations.md``,
"Running a cluster"): the journal, the key records and the name locks are in
the shared PostgreSQL, so N needs a PostgreSQL journal and key store. Each
process is a node of its own: node id ``<node_id>-<i>`` (claimed in the
cluster like any node's) and audit log ``<audit_log stem>-<i><suffix>`` (one
writer per log).

The parent forks the children before any event loop or thread exists, then
only supervises: SIGINT, SIGTERM and SIGHUP are passed on to every child; a child
that exits ends the others, and the parent exits with the first non-zero
status (a supervisor such as systemd or Kubernetes restarts the whole set).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from replicator.config import Config
from replicator.journal import is_postgresql


def cannot_share(config: Config) -> str | None:
    """Why ``config`` cannot run as several processes, or None."""
    if not is_postgresql(config.journal) or config.keys.store is None:
        return (
            "several processes need the shared state of a cluster: a PostgreSQL journal and key store "
            "(journal = and [keys] store = postgresql://…)"
        )
    return None


def process_config(config: Config, index: int) -> Config:
    """Process ``index``'s config (from 1): its own node id and audit log."""
    node = f"{config.node_id}-{index}"
    if len(node) > 32:
        raise ValueError(f"node id {config.node_id!r} is too long to number its processes (at most 30 characters)")
    log = Path(config.audit_log)
    return config.model_copy(update={"node_id": node, "audit_log": log.with_name(f"{log.stem}-{index}{log.suffix}")})


def run_processes(count: int, child: Callable[[int], int]) -> int:
    """Fork ``count`` children running ``child(index)`` (its exit status); supervise them until they
    have all exited; the first non-zero status, or 0."""
    pids: dict[int, int] = {}
    for index in range(1, count + 1):
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            status = 1
            try:
                status = child(index)
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        pids[pid] = index

    def pass_on(signum: int, _frame: object) -> None:
        for pid in pids:
            _signal(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: each re-reads its certificate
        signal.signal(signum, pass_on)
    first = 0
    while pids:
        pid, wait_status = os.wait()
        if pid not in pids:
            continue
        del pids[pid]
        status = os.waitstatus_to_exitcode(wait_status)
        if status != 0 and first == 0:
            first = status if status > 0 else 1
        for other in pids:  # one gone: the set stops, and is restarted whole
            _signal(other, signal.SIGTERM)
    return first


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
