"""``replicator keys new-signing-key PATH``: make the Ed25519 key that signs erasure receipts.

Writes the private key (PKCS#8 PEM, mode 0600, never over an existing file)
and its public key beside it (``PATH.pub``, for auditors), and prints the
key id receipts will name. The config names the private key by path
(``erasure_receipt_key``); ``openssl genpkey -algorithm ed25519 -out PATH``
then ``openssl pkey -in PATH -pubout -out PATH.pub`` make the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("new-signing-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def new_signing_key(path: Path) -> None:
    """Make a new Ed25519 receipt signing key at PATH (0600) and its public key at PATH.pub."""
    from keys import receipts

    try:
        key = receipts.generate(path)
    except FileExistsError:
        click.echo(f"replicator: {path} exists; a signing key is never overwritten", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"replicator: cannot write {path}: {e.strerror}", err=True)
        sys.exit(2)
    click.echo(f"{path}: new receipt signing key {key.key_id}; public key for auditors: {path}.pub")
    click.echo(f'name it in the config: erasure_receipt_key = "{path.resolve()}"', err=True)
