"""``replicator journal list|retry|drop``: the operator's hands on pending replication work.

Rows name objects by their region names (``v1/<customer tag>/<class>/<name
tag>``) and errors by region and kind, so nothing here shows a customer
identifier or plaintext. ``retry`` makes rows due now (a row a live worker
holds stays with it until its lease ends); ``drop`` removes rows after a
confirmation: their work is then left to the nightly reconcile.

Exit codes: 0 done; 1 aborted, or some of the given ids were not pending; 2
the command could not run (config, journal unreachable, bad arguments).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from replicator.cli.options import config_option, config_or_exit, var_option
from replicator.journal import Journal

T = TypeVar("T")
CANNOT_RUN = 2

_dst = click.option("--dst", help="Only rows whose destination is this region.")


def _with_journal(config_path: Path | None, var_dir: Path, dst: str | None, fn: Callable[[Journal], Awaitable[T]]) -> T:
    """Load the config, open its journal, run ``fn(journal)``; exit 2 with a clear message on failure."""
    from replicator.journal import JournalError
    from replicator.runtime import Runtime

    config = config_or_exit(config_path, var_dir)
    if dst is not None and dst not in config.regions:
        _fail(f"no region {dst!r} (have {', '.join(config.regions)})")

    async def run() -> T:
        async with Runtime(config) as runtime:
            return await fn(runtime.journal)

    try:
        return asyncio.run(run())
    except JournalError as e:
        _fail(str(e))


def _fail(message: str) -> NoReturn:
    click.echo(f"replicator: {message}", err=True)
    sys.exit(CANNOT_RUN)


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _selection(ids: tuple[int, ...], all_: bool) -> list[int] | None:
    if bool(ids) == all_:
        raise click.UsageError("give row ids, or --all (optionally with --dst)")
    return list(ids) if ids else None


@click.group("journal")
def journal_group() -> None:
    """Pending replication work: list, retry, drop."""


@journal_group.command("list")
@config_option()
@var_option
@_dst
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Rows shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_rows(config_path: Path | None, var_dir: Path, dst: str | None, limit: int, as_json: bool) -> None:
    """Pending rows, next due first: attempts, next try, lease, last error."""
    total, rows = _with_journal(config_path, var_dir, dst, lambda j: j.pending(dst=dst, limit=limit))
    if as_json:
        click.echo(json.dumps({"pending": total, "rows": [asdict(r) for r in rows]}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(
        title=f"journal: {total} pending row{'s' * (total != 1)}"
        + (f" (first {len(rows)})" if len(rows) < total else "")
    )
    for column in ("id", "kind", "route", "name", "attempts", "next try", "age", "leased by", "last error"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id),
            r.kind,
            f"{r.src}→{r.dst}",
            r.name,
            str(r.attempts),
            "due" if r.next_try <= now else f"in {_ago(r.next_try - now)}",
            _ago(now - r.created),
            f"{r.leased_by} ({_ago(r.lease_until - now)})" if r.leased_by and r.lease_until > now else "",
            r.last_error,
            style="red" if r.attempts else None,
        )
    Console().print(table)


async def _missing(journal, ids: list[int] | None) -> list[int]:
    if not ids:
        return []
    _, present = await journal.pending(ids=ids, limit=len(ids))
    return sorted(set(ids) - {r.id for r in present})


@journal_group.command("retry")
@config_option()
@var_option
@_dst
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Every row (with --dst: every row for that region).")
def retry(config_path: Path | None, var_dir: Path, dst: str | None, ids: tuple[int, ...], all_: bool) -> None:
    """Make rows due now (after a region came back). A row a live worker holds stays with it."""
    selected = _selection(ids, all_)

    async def go(journal):
        missing = await _missing(journal, selected)
        return missing, await journal.retry_now(ids=selected, dst=dst)

    missing, count = _with_journal(config_path, var_dir, dst, go)
    click.echo(f"replicator: {count} row{'s' * (count != 1)} due now")
    if missing:
        click.echo(f"replicator: not pending: {' '.join(map(str, missing))}", err=True)
        sys.exit(1)


@journal_group.command("drop")
@config_option()
@var_option
@_dst
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Every row (with --dst: every row for that region).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop(config_path: Path | None, var_dir: Path, dst: str | None, ids: tuple[int, ...], all_: bool, yes: bool) -> None:
    """Remove rows without doing their work; the nightly reconcile still levels the regions."""
    selected = _selection(ids, all_)

    async def count(journal):
        return await _missing(journal, selected), (await journal.pending(ids=selected, dst=dst, limit=0))[0]

    missing, matched = _with_journal(config_path, var_dir, dst, count)
    if missing:
        click.echo(f"replicator: not pending: {' '.join(map(str, missing))}", err=True)
    if matched == 0:
        click.echo("replicator: no rows to drop")
        sys.exit(1 if missing else 0)
    if not yes:
        click.confirm(
            f"Drop {matched} pending row{'s' * (matched != 1)}"
            f"{f' for {dst}' if dst else ''}? Their copies and deletes will not be retried; "
            "the nightly reconcile will still level the regions",
            abort=True,
        )
    dropped = _with_journal(config_path, var_dir, dst, lambda j: j.drop(ids=selected, dst=dst))
    click.echo(f"replicator: dropped {dropped} row{'s' * (dropped != 1)}")
    if missing:
        sys.exit(1)
