"""The audit chain of the commands run beside the service: ``erase``, ``keys rotate``, ``reconcile``.

Where. A log takes one writer (``keys.audit``: an exclusive ``flock``), and
the service on this host holds the node's own (``audit_log``). So commands
never append to it: they keep their own chain beside it,
``<audit_log stem>-cli<suffix>`` (``audit-cli.log``), keyed under the same
audit key from the key provider, as node ``<node_id>-cli``. Commands on one
host take turns: each opens the log when it has something to record,
waiting up to ``OPEN_WAIT`` seconds for another command to close it. The
nightly reconcile, which holds its log for its whole run, keeps a chain of
its own the same way, one per run (role ``reconcile-<report id>``:
``audit-reconcile-<report id>.log``, node ``<node_id>-reconcile-<report id>``),
so an operator's erase never waits for it and a run on a fresh disk never
has to go on from a chain shipped before.

Seen by. ``replicator audit verify`` (with the config) checks it beside the
node's log, keyed, and against what was shipped; the command that wrote it
ships it itself, one round of :class:`~replicator.replication.audit_ship.AuditShipper`
to ``audit/<node_id>-cli/`` in both regions before it exits (a region that
is down then gets it from the next command's round). ``who-accessed`` and
every other reader of shipped chains see it as one more node.

What it holds: the operator's principal (``cli:<login name>``, or
``reconcile``), the action, tags and counts, as every record (no key, no
token, no customer id: ``keys.audit`` refuses anything else).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path

from keys import AuditLog
from keys.audit import AuditBusy
from replicator.config import Config
from replicator.observe.audit import CountedAuditLog
from replicator.replication.audit_ship import AuditShipper
from replicator.runtime import Runtime

log = logging.getLogger("replicator.cli.operator_audit")

OPEN_WAIT = 30.0  # seconds a command waits for another command's turn at the log
SHIP_WAIT = 30.0  # seconds a command's shipping round may take before it gives up (the next one catches up)


def cli_log_path(config: Config, role: str = "cli") -> Path:
    """A command's audit log: ``<audit_log stem>-<role><suffix>`` beside the node's own (``role`` starts
    with a letter, so it never meets ``serve --processes``' numbered logs)."""
    node_log = Path(config.audit_log)
    return node_log.with_name(f"{node_log.stem}-{role}{node_log.suffix}")


def cli_node(config: Config, role: str = "cli") -> str:
    """The node id a command's chain is shipped under (``audit/<node_id>-<role>/``)."""
    return f"{config.node_id}-{role}"


def command_logs(config: Config) -> dict[str, Path]:
    """Every command's chain beside the config's log, by the node id it is shipped under."""
    node_log = Path(config.audit_log)
    found = {}
    for path in sorted(node_log.parent.glob(f"{node_log.stem}-[a-z]*{node_log.suffix}")):
        role = path.name[len(node_log.stem) + 1 : len(path.name) - len(node_log.suffix)]
        found[cli_node(config, role)] = path
    return found


async def open_cli_log(runtime: Runtime, *, role: str = "cli", wait: float | None = None) -> AuditLog:
    """The commands' log (``role``'s), keyed, closed with ``runtime``; waits up to ``wait`` s (default
    ``OPEN_WAIT``) for another command to close it, then ``AuditBusy``. Raises ``AuditUnavailable`` as
    ``AuditLog.open`` does."""
    key = (await runtime.keys()).audit_key()
    path = cli_log_path(runtime.config, role)
    deadline = time.monotonic() + (OPEN_WAIT if wait is None else wait)
    while True:
        try:
            audit = await asyncio.to_thread(CountedAuditLog.counting, path, runtime.metrics, key)
        except AuditBusy:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        runtime.push(functools.partial(asyncio.to_thread, audit.close))
        return audit


async def ship_cli_log(runtime: Runtime, audit: AuditLog, *, role: str = "cli", wait: float = SHIP_WAIT) -> str:
    """One shipping round of the commands' (``role``'s) chain to every region: ``"ok"`` or what is behind."""
    key = (await runtime.keys()).audit_key()
    return await AuditShipper(cli_node(runtime.config, role), audit, runtime.regions, key).ship_within(wait)


async def record(config: Config, *, principal: str, action: str, outcome: str, ship: bool = True) -> str:
    """Append one record to the commands' chain (and ship it): ``"ok"`` or what went wrong, never raising
    for the log (the caller's deed is done; it reports a record it could not write or ship)."""
    written = False
    try:
        async with Runtime(config) as runtime:
            audit = await open_cli_log(runtime)
            await audit.append_async(principal=principal, action=action, outcome=outcome)
            written = True
            shipped = await ship_cli_log(runtime, audit) if ship else "ok"
    except Exception as e:  # the audit log, the key provider or a region: said by the caller
        log.warning("operator audit record", extra={"action": action, "written": written, "error": type(e).__name__})
        shipped = f"{type(e).__name__}: {e}"
        if not written:
            return f"not written: {shipped}"
    return "ok" if shipped == "ok" else f"written, not yet shipped to the regions ({shipped}; the next command retries)"
