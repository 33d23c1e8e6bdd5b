"""``replicator tokens create|list|revoke``: service tokens with a life, in the token store beside the
journal (``replicator.tokens``). Every ``serve`` node sharing that journal picks a change up within
about a second, no restart.

``create`` prints the token once, alone on standard output (``TOKEN=$(replicator tokens create …)``),
and its id and details on standard error; only its SHA-256 is stored. ``list`` and ``revoke`` name
tokens by id, never by the token. Exit codes: 0 done; 1 some id was not found; 2 the command could
not run (config, store unreachable, bad arguments).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from replicator.cli.options import config_option, config_or_exit, var_option

T = TypeVar("T")
CANNOT_RUN = 2
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def _fail(message: str) -> NoReturn:
    click.echo(f"replicator: {message}", err=True)
    sys.exit(CANNOT_RUN)


def _run(config_path: Path | None, var_dir: Path, fn: Callable[..., Awaitable[T]]) -> T:
    """``fn(store, policy)`` on the config's token store; exit 2 with a message if it cannot run."""
    from replicator.runtime import Runtime
    from replicator.tokens import TokenStoreError

    config = config_or_exit(config_path, var_dir)

    async def run() -> T:
        async with Runtime(config) as runtime:
            return await fn(await runtime.tokens(), runtime.policy)

    try:
        return asyncio.run(run())
    except TokenStoreError as e:
        _fail(str(e))


def parse_expiry(expires_in: str | None, expires_at: str | None, now: float) -> float | None:
    """Unix seconds from ``--expires-in 90d`` (s, m, h, d, w) or ``--expires-at`` (ISO 8601, UTC if
    no offset); ``click.BadParameter`` for anything else or a time not in the future."""
    if expires_in is not None and expires_at is not None:
        raise click.UsageError("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        m = _DURATION.fullmatch(expires_in.strip())
        if not m or int(m.group(1)) == 0:
            raise click.BadParameter("a positive duration such as 30m, 12h, 90d or 2w", param_hint="--expires-in")
        return now + int(m.group(1)) * _UNITS[m.group(2)]
    if expires_at is not None:
        try:
            when = datetime.fromisoformat(expires_at)
        except ValueError:
            raise click.BadParameter(
                "an ISO 8601 time such as 2027-01-31T00:00:00Z", param_hint="--expires-at"
            ) from None
        at = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        if at <= now:
            raise click.BadParameter("the time is not in the future", param_hint="--expires-at")
        return at
    return None


@click.group("tokens")
def tokens_group() -> None:
    """Service tokens with an expiry that can be revoked without a restart."""


@tokens_group.command("create")
@config_option()
@var_option
@click.option("--principal", required=True, help="Who holds the token (the name audit records carry).")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope, as in the policy (repeat).")
@click.option("--expires-in", help="Lifetime: 30m, 12h, 90d, 2w. Default: no expiry.")
@click.option("--expires-at", help="Expiry as an ISO 8601 time (UTC unless it says otherwise).")
@click.option("--client-subject", help="Bind the token to a client certificate with this subject (RFC 4514).")
@click.option("--client-san", help="Bind the token to a client certificate carrying this name (DNS:…, URI:…).")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
def create(
    config_path: Path | None,
    var_dir: Path,
    principal: str,
    scopes: tuple[str, ...],
    expires_in: str | None,
    expires_at: str | None,
    client_subject: str | None,
    client_san: str | None,
    as_json: bool,
) -> None:
    """Make a token; it is shown once and stored only as its SHA-256."""
    from keys import Policy, check_scope
    from keys.policy import check_binding, generate_token
    from keys.policy.model import PRINCIPAL_NAME
    from replicator.tokens import TokenRecord, TokenStore, new_token_id

    now = time.time()
    expiry = parse_expiry(expires_in, expires_at, now)
    if not PRINCIPAL_NAME.fullmatch(principal):
        raise click.BadParameter("1 to 64 of A-Z a-z 0-9 . _ -", param_hint="--principal")
    try:
        check_binding(client_subject, client_san)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    token, digest = generate_token()
    record = TokenRecord(
        new_token_id(), principal, digest, tuple(sorted(set(scopes))), now, expiry, None, client_subject, client_san
    )

    async def make(store: TokenStore, policy: Policy) -> None:
        if any(p.name == principal for p in policy.principals):
            _fail(f"principal {principal!r} is in the policy file; a store token needs a name of its own")
        for scope in record.scopes:
            try:
                check_scope(scope, policy.classes)
            except ValueError as e:
                _fail(str(e))
        await store.create(record)

    _run(config_path, var_dir, make)
    if as_json:
        click.echo(json.dumps({"token": token, **record.listing(now)}))
        return
    expires = record.listing(now)["expires_at"] or "never"
    click.echo(f"replicator: token {record.token_id} for {principal!r} (expires {expires}); shown once:", err=True)
    click.echo(token)


@tokens_group.command("list")
@config_option()
@var_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.option("--active", is_flag=True, help="Only tokens neither expired nor revoked.")
def list_tokens(config_path: Path | None, var_dir: Path, as_json: bool, active: bool) -> None:
    """Every token of the store (never the tokens themselves)."""
    records = _run(config_path, var_dir, lambda store, _: store.records())
    now = time.time()
    shown = [r.listing(now) for r in records if not active or r.state(now) == "active"]
    if as_json:
        click.echo(json.dumps(shown))
        return
    click.echo(f"{'ID':16} {'PRINCIPAL':20} {'STATE':8} {'EXPIRES':20} SCOPES")
    for r in shown:
        when = r["revoked_at"] if r["state"] == "revoked" else r["expires_at"]
        click.echo(f"{r['id']:16} {r['principal']:20} {r['state']:8} {when or 'never':20} {' '.join(r['scopes'])}")


@tokens_group.command("revoke")
@config_option()
@var_option
@click.argument("token_ids", nargs=-1)
@click.option("--principal", help="Revoke every token of this principal.")
def revoke(config_path: Path | None, var_dir: Path, token_ids: tuple[str, ...], principal: str | None) -> None:
    """Revoke tokens by id (or all of a principal's); every node refuses them within a second or so."""
    from keys import Policy
    from replicator.tokens import TokenRecord, TokenStore
    from replicator.tokens.model import iso

    if bool(token_ids) == bool(principal):
        raise click.UsageError("give token ids, or --principal NAME")

    async def run(store: TokenStore, _: Policy) -> tuple[list[TokenRecord], list[str]]:
        ids = list(token_ids)
        if principal is not None:
            ids = [r.token_id for r in await store.records() if r.principal == principal and r.revoked_at is None]
        now = time.time()
        done, missing = [], []
        for token_id in ids:
            record = await store.revoke(token_id, now)
            if record is None:
                missing.append(token_id)
            else:
                done.append(record)
        return done, missing

    done, missing = _run(config_path, var_dir, run)
    for r in done:
        click.echo(f"revoked {r.token_id} (principal {r.principal!r}) at {iso(r.revoked_at)}")
    if principal is not None and not done:
        click.echo(f"replicator: principal {principal!r} has no token left to revoke", err=True)
    for token_id in missing:
        click.echo(f"replicator: no token {token_id!r}", err=True)
    if missing:
        sys.exit(1)
