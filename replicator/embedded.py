"""The embedded default: everything under ``./var``, no cloud account.

``ensure(var)`` makes, once: two local regions (``ca`` and ``jp``), a keyring
whose KEK is a key file, a SQLite journal, an audit log, the Ed25519 key that
signs erasure receipts (``receipt-signing.pem``, its public key beside it in
``receipt-signing.pem.pub``), and a development
token with every scope. The token is returned once (for printing) and kept in
plain only in ``var/dev-token`` (0600); the config holds its hash. The policy
is the packaged default (``replicator.config.DEFAULT_POLICY``), left unnamed in
the config so that ``var`` keeps working when the package moves (a new venv).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from keys import KeyFile, generate_token, load_policy, receipts
from replicator.config import DEFAULT_POLICY

CONFIG_NAME = "replicator.toml"
RECEIPT_KEY = "receipt-signing.pem"
LOCAL_REGIONS = """[regions.ca]
kind = "local"
country = "CA"
path = "regions/ca"

[regions.jp]
kind = "local"
country = "JP"
path = "regions/jp"
"""


def all_scopes(policy_path: Path = DEFAULT_POLICY) -> list[str]:
    policy = load_policy(policy_path)
    scopes = ["erase", "export", "admin"]
    for name, dc in sorted(policy.classes.items()):
        scopes += [f"write:{name}", f"meta:{name}", f"delete:{name}", f"restore:{name}"]
        scopes += [f"read:{name}:{p}" for p in sorted(dc.purposes)]
    return scopes


def ensure(var: Path) -> tuple[Path, str | None]:
    """The config path under ``var``, and the new dev token if this call created it."""
    var = var.resolve()
    config = var / CONFIG_NAME
    if config.exists():
        return config, None
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = var / "kek.key"
    if not key_file.exists():
        KeyFile.generate(key_file)
    receipt_key = var / RECEIPT_KEY
    if not receipt_key.exists():
        receipts.generate(receipt_key)  # and receipt-signing.pem.pub, the public key for auditors
    token, token_hash = generate_token()
    token_file = var / "dev-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    text = config_text(
        "dev",
        LOCAL_REGIONS,
        {"dev": (token_hash, all_scopes())},
        header="# The embedded default, made by `replicator serve` on first start.\n"
        "# No `policy`: the packaged default (replicator/data/policy.toml), wherever\n"
        "# the package is installed.\n"
        f'erasure_receipt_key = "{RECEIPT_KEY}"  # signs erasure receipts; the public key is beside it (.pub)\n',
    )
    tmp = config.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, config)
    return config, token


def config_text(
    node_id: str,
    regions: str,
    principals: Mapping[str, tuple[str, Iterable[str]]] = {},
    *,
    kek: str = 'key_file = "kek.key"',
    sections: str = "",
    header: str = "",
    journal: str = "sqlite:///journal.sqlite3",
    keys: str = 'keyring = "keyring.json"',
) -> str:
    """A config whose files live beside it (``keyring.json``, a SQLite journal, ``audit.log``).

    ``kek`` is the ``[keys]`` line that unlocks the keyring; ``regions`` and ``sections`` are TOML
    tables as written (``sections`` first: ``[limits]``, ``[reconcile]``...); ``principals`` maps a
    name to its token's SHA-256 and its scopes; ``header`` goes first (comments, top-level keys).
    ``journal`` (a URL) and ``keys`` (the ``[keys]`` line naming where keys live) default to the
    files beside it; a cluster gives PostgreSQL for both.
    """
    entries = "".join(
        f'\n[[principals]]\nname = {toml_str(name)}\ntoken_sha256 = "{digest}"\n'
        f"scopes = [{', '.join(map(toml_str, scopes))}]\n"
        for name, (digest, scopes) in principals.items()
    )
    return f"""{header}node_id = {toml_str(node_id)}
read_preference = "ca"
journal = {toml_str(journal)}
audit_log = "audit.log"

[keys]
{keys}
{kek}

{sections}{regions}{entries}"""


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
