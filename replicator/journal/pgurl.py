"""The PostgreSQL journal's URL: a libpq-style URL plus options of our own (see :mod:`.postgres`),
split into what asyncpg gets and what may be shown (never a password)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OURS = ("password_env", "schema", "pool_max", "connect_timeout", "command_timeout")


@dataclass(frozen=True)
class Target:
    """A parsed journal URL: what to hand asyncpg, and what may be shown (no password)."""

    dsn: str
    shown: str
    password: SecretStr | None
    password_env: str | None
    inline_password: bool
    schema: str
    pool_max: int
    connect_timeout: float
    command_timeout: float


def parse_url(url: str) -> Target:
    """Split ``url`` into asyncpg's DSN and our options; ``ValueError`` never quotes a password."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    inline = parts.password is not None or "password" in query
    password = parts.password if parts.password is not None else query.pop("password", None)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts  # user[:password]@hosts: drop the password
    ours = {k: query.pop(k) for k in _OURS if k in query}
    rest = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    schema = ours.get("schema", "public")
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"journal {shown}: schema {schema!r} must match [a-z_][a-z0-9_]{{0,62}}")
    try:
        pool_max = int(ours.get("pool_max", 10))
        connect_timeout = float(ours.get("connect_timeout", 10))
        command_timeout = float(ours.get("command_timeout", 30))
    except ValueError:
        raise ValueError(f"journal {shown}: pool_max, connect_timeout and command_timeout must be numbers") from None
    if not 1 <= pool_max <= 1000 or connect_timeout <= 0 or command_timeout <= 0:
        raise ValueError(f"journal {shown}: need 1 <= pool_max <= 1000 and positive timeouts")
    env = ours.get("password_env")
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise ValueError(f"journal {shown}: password_env {env!r} is not an environment variable name")
    return Target(
        dsn=rest,
        shown=shown,
        password=SecretStr(password) if password is not None else None,
        password_env=env,
        inline_password=inline,
        schema=schema,
        pool_max=pool_max,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )


def check_url(url: str) -> None:
    """The config's rule: no password in the URL; a ``password_env`` that is set."""
    target = parse_url(url)
    if target.inline_password:
        raise ValueError(
            f"journal {target.shown}: the URL holds a password; put it in an environment "
            "variable and name it with ?password_env=VAR"
        )
    if target.password_env and not os.environ.get(target.password_env):
        raise ValueError(f"environment variable {target.password_env} (the journal password) is not set")
