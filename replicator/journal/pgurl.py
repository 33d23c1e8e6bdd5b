"""The PostgreSQL journal's URL: a libpq-style URL plus options of our own (see :mod:`.postgres`),
split into what asyncpg gets and what may be shown (never a password).

A URL may name several hosts, a primary and its standbys, as libpq's do::

    postgresql://replicator@db1:5432,db2:5432/replicator?password_env=VAR

Each connection goes to the first of them that takes writes: ``target_session_attrs``
is ``read-write`` unless the URL says ``primary`` or ``any`` (the journal writes, so
the read-only choices are refused).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OURS = ("password_env", "schema", "pool_max", "connect_timeout", "command_timeout")
_WRITABLE = ("read-write", "primary", "any")


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
    # The URL's hosts in its order, a port each (None: asyncpg's default); () when it names none.
    hosts: tuple[tuple[str, int | None], ...] = ()
    target_session_attrs: str = "read-write"


def parse_url(url: str) -> Target:
    """Split ``url`` into asyncpg's DSN and our options; ``ValueError`` never quotes a password."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    inline = parts.password is not None or "password" in query
    password = parts.password if parts.password is not None else query.pop("password", None)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts  # user[:password]@hosts: drop the password
    ours = {k: query.pop(k) for k in _OURS if k in query}
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    attrs = query.setdefault("target_session_attrs", "read-write")
    if attrs not in _WRITABLE:
        raise ValueError(
            f"journal {shown}: target_session_attrs={attrs!r} would allow a read-only server; "
            f"the journal writes: use {', '.join(_WRITABLE)}"
        )
    rest = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
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
        hosts=_hosts(hosts, query, shown),
        target_session_attrs=attrs,
    )


def _hosts(netloc_hosts: str, query: dict[str, str], shown: str) -> tuple[tuple[str, int | None], ...]:
    """``h1:p1,[v6]:p2,h3`` (or libpq's ``?host=h1,h2&port=p1,p2``) as (host, port) pairs."""
    ports = [p for p in query.get("port", "").split(",") if p]
    if netloc_hosts:
        specs = [_split_hostport(s) for s in netloc_hosts.split(",")]
    else:
        specs = [(h, None) for h in query.get("host", "").split(",") if h]
    out = []
    for i, (host, port) in enumerate(specs):
        if port is None and ports:  # libpq: one port for all hosts, or one per host
            port = ports[i] if len(ports) == len(specs) else ports[0]
        try:
            number = int(port) if port else None
        except ValueError:
            raise ValueError(f"journal {shown}: port {port!r} is not a number") from None
        if number is not None and not 0 < number < 65536:
            raise ValueError(f"journal {shown}: port {number} is out of range")
        out.append((unquote(host), number))
    return tuple(out)


def _split_hostport(spec: str) -> tuple[str, str | None]:
    if spec.startswith("["):  # [IPv6]:port
        host, _, rest = spec[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, colon, port = spec.rpartition(":")
    return (host, port) if colon else (spec, None)


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
