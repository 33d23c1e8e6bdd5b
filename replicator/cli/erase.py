"""``replicator erase <customer>``: the API's erasure, run by an operator from a config file.

The same code path as ``DELETE /v1/customers/{customer}``: :meth:`Service.erase`
destroys the customer's key at once (crypto-shredding) and records the
erasure in the journal; the :class:`~replicator.paths.erasure.Eraser` then sweeps
both regions. Here the sweep runs in the foreground, up to ``wait`` seconds,
and the receipt is what ``GET /v1/erasures/{id}`` would answer. A sweep that
is cut short (a region down, Ctrl-C) stays ``running`` in the journal: the
service resumes it at its next start, or the same command can be run again.

The principal is ``cli:<login name>``, recorded as such in the audit log:
the commands' own chain beside the service's (``replicator.cli.operator_audit``:
``audit-cli.log``, shipped to both regions as node ``<node_id>-cli`` when the
command ends), so it is recorded while the service runs. Only when that log
cannot be written either does the erasure go ahead without its audit line
(exactly as the service does: erasure is the customer's right), and the
caller is told; the journal's receipt is the record then.

``replicator erase verify-receipt FILE`` checks a receipt's signature offline
(:mod:`keys.receipts`), under ``--public-key`` or the config's signing key; the
main group routes ``erase verify-receipt`` to it (``replicator/cli/__init__.py``),
so a customer literally named ``verify-receipt`` is erased through the API.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from keys import AuditLog, AuditUnavailable, Principal
from replicator.cli.operator_audit import open_cli_log, ship_cli_log
from replicator.cli.options import config_option, var_option
from replicator.config import Config
from replicator.journal import Erasure
from replicator.observe.metrics import Metrics
from replicator.paths.erasure import Eraser
from replicator.runtime import Runtime

DONE, RUNNING, CANNOT_RUN = 0, 1, 2


class _NoAudit:
    """The audit log as the service sees it when it cannot write: every append refused."""

    def __init__(self, reason: str):
        self.reason = reason

    async def append_async(self, **_) -> None:
        raise AuditUnavailable(self.reason)

    def close(self) -> None:
        pass


class _Foreground:
    """Hands :meth:`Service.erase`'s sweep to the real eraser and keeps the task to wait on."""

    def __init__(self, eraser: Eraser):
        self.eraser = eraser
        self.task: asyncio.Task[None] | None = None

    def start(self, erasure: Erasure) -> asyncio.Task[None]:
        self.task = self.eraser.start(erasure)
        return self.task


def operator_principal() -> Principal:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container with a bare uid)
        user = "unknown"
    name = "cli:" + (re.sub(r"[^A-Za-z0-9._@-]", "-", user)[:64] or "unknown")
    return Principal(name, "", frozenset({"erase"}))


async def run_erase(
    config: Config,
    customer: str,
    *,
    wait: float,
    say: Callable[[str], None] = lambda _: None,
    retry_wait: float = 5.0,
    metrics: Metrics | None = None,
) -> tuple[dict[str, Any], int]:
    """Erase ``customer``; return the receipt and DONE, or RUNNING if the sweep did not finish in time."""
    async with Runtime(config, metrics=metrics) as runtime:
        regions, journal = runtime.regions, runtime.journal
        keys = await runtime.keys()  # the key before the audit log, as the server opens them
        audit: AuditLog | _NoAudit
        try:
            audit = await open_cli_log(runtime)  # never the service's own log: it has one writer
        except AuditUnavailable as e:
            say(
                f"warning: the audit log cannot be opened ({e}); the erasure goes ahead without its audit "
                "line, and the journal keeps its receipt"
            )
            audit = _NoAudit(str(e))
        service = await runtime.service(audit=audit)  # type: ignore[arg-type]  # _NoAudit: only append_async
        eraser = Eraser(
            regions, journal, keys, retry_wait=retry_wait, audit=audit if isinstance(audit, AuditLog) else None
        )
        runtime.push(eraser.close)
        foreground = _Foreground(eraser)
        principal = operator_principal()
        started = await service.erase(principal, customer, foreground)
        say(
            f"key destroyed at {started['key_destroyed_at']}; erasure {started['erasure']} is sweeping "
            f"{' and '.join(regions)}"
        )
        assert foreground.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(foreground.task), wait)
        except TimeoutError:
            say(f"the sweep did not finish within {wait:g}s (a region down?); it stays running in the journal")
        receipt = await service.erasure(principal, started["erasure"])
        if isinstance(audit, AuditLog) and (shipped := await ship_cli_log(runtime, audit)) != "ok":
            say(f"the audit record is written; shipping it to the regions is {shipped} (the next command retries)")
        return receipt, DONE if receipt["state"] == "done" else RUNNING


@click.command("erase")
@click.argument("customer")
@config_option()
@var_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to sweep the regions before printing the receipt; a sweep still running then "
    "is resumed by the service at its next start.",
)
def erase(customer: str, config_path: Path | None, var_dir: Path, yes: bool, wait: float) -> None:
    """Erase CUSTOMER: destroy their key now, then delete their objects in both regions; print the receipt.

    The same path as DELETE /v1/customers/{customer}. Exit 0 done, 1 key destroyed but the sweep still
    running, 2 nothing done. The receipt is signed when the config names erasure_receipt_key; check one
    with `replicator erase verify-receipt FILE [--public-key KEY.pub]`."""
    import asyncio
    import json

    from replicator import errors
    from replicator.config import ConfigError, load_config
    from replicator.embedded import CONFIG_NAME
    from replicator.paths.names import check_customer

    try:
        config = load_config(config_path or var_dir / CONFIG_NAME)
        check_customer(customer)
    except (ConfigError, errors.ServiceError) as e:
        click.echo(f"replicator: {getattr(e, 'message', e)}", err=True)
        sys.exit(CANNOT_RUN)
    if not yes:
        try:
            sure = click.confirm(
                f"Erase customer {customer!r}? Their key is destroyed at once and cannot be "
                "recovered; every object of theirs in both regions is deleted",
                err=True,
            )
        except click.Abort:  # no terminal to answer (end of input): not a yes
            sure = False
        if not sure:
            click.echo("replicator: not erased", err=True)
            sys.exit(CANNOT_RUN)
    try:
        receipt, code = asyncio.run(run_erase(config, customer, wait=wait, say=lambda line: click.echo(line, err=True)))
    except KeyboardInterrupt:
        click.echo(
            "replicator: interrupted; if the key was destroyed, the erasure stays running in the journal "
            "and the service resumes it at its next start (or run this command again)",
            err=True,
        )
        sys.exit(1)
    except errors.ServiceError as e:
        click.echo(f"replicator: erase: {e.message}", err=True)
        sys.exit(CANNOT_RUN)
    click.echo(json.dumps(receipt, indent=1))
    sys.exit(code)


VALID, INVALID = 0, 1


@click.command("verify-receipt")
@click.argument("receipt_file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The deployment's receipt public key (PEM, e.g. receipt-signing.pem.pub); default: the public half "
    "of the config's erasure_receipt_key.",
)
@config_option("Config whose erasure_receipt_key to check against when --public-key is not given.")
@var_option
def verify_receipt(receipt_file: Path, public_key: Path | None, config_path: Path | None, var_dir: Path) -> None:
    """Check an erasure receipt's Ed25519 signature offline (FILE: the JSON of `replicator erase` or of
    GET /v1/erasures/{id}; - for standard input). Exit 0 valid, 1 invalid (says why), 2 cannot check."""
    import json

    from keys import receipts
    from replicator.cli.options import config_or_exit

    try:
        if public_key is None:
            config = config_or_exit(config_path, var_dir)
            if config.erasure_receipt_key is None:
                click.echo("replicator: the config names no erasure_receipt_key: give --public-key", err=True)
                sys.exit(CANNOT_RUN)
            key = receipts.SigningKey.load(config.erasure_receipt_key).public
        else:
            key = receipts.load_public(public_key)
    except receipts.ReceiptKeyError as e:
        click.echo(f"replicator: {e}", err=True)
        sys.exit(CANNOT_RUN)
    try:
        text = sys.stdin.read() if str(receipt_file) == "-" else receipt_file.read_text(encoding="utf-8")
        receipt = json.loads(text)
    except OSError as e:
        click.echo(f"replicator: cannot read {receipt_file}: {e.strerror}", err=True)
        sys.exit(CANNOT_RUN)
    except ValueError:
        click.echo(f"replicator: {receipt_file} is not JSON", err=True)
        sys.exit(CANNOT_RUN)
    checked = receipts.verify(receipt, key)
    if not checked.ok:
        click.echo(f"{receipt_file}: INVALID: {checked.reason}", err=True)
        sys.exit(INVALID)
    click.echo(
        f"{receipt_file}: valid: erasure {receipt.get('erasure')} ({receipt.get('state')}, key destroyed at "
        f"{receipt.get('key_destroyed_at')}, issued {receipt.get('issued_at')}), signed by {checked.key_id}"
    )
    sys.exit(VALID)
