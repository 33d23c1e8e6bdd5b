"""The key store's tables, migrated like the journal's (``replicator.journal.pgschema.migrate``)
but recorded in their own version table, so the two may share one schema.

Customers appear by customer tag only, as in the keyring file: a copy of the
database without the KEK neither opens a key nor lists who the customers are.
A destroyed DEK keeps its row (id and time: it stays destroyed for ever) but
loses its wrapped key and its wrapped name key (version 2: the key that seals
object names, ``keys.tags``), in the same transaction that writes the tombstone.
"""

from __future__ import annotations

VERSION_TABLE = "keystore_version"

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE key_ring (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    kek_current integer NOT NULL,
    index_key   text NOT NULL,
    link        text
);
CREATE TABLE key_keks (
    version integer PRIMARY KEY,
    entry   text NOT NULL
);
CREATE TABLE key_deks (
    dek_id       text PRIMARY KEY,
    customer_tag text NOT NULL,
    kek          integer,
    wrapped      text,
    created_at   timestamptz NOT NULL,
    destroyed_at timestamptz,
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
CREATE TABLE key_customers (
    customer_tag text PRIMARY KEY,
    dek_id       text REFERENCES key_deks (dek_id),
    erased_at    timestamptz,
    erased_dek   text
);
""",
    ),
    (
        2,
        """
ALTER TABLE key_deks ADD COLUMN name_key text;
ALTER TABLE key_deks ADD CONSTRAINT key_deks_name_key_dies_with_dek CHECK (destroyed_at IS NULL OR name_key IS NULL);
""",
    ),
]
