"""Key records shared by a cluster: the ``KeyProvider`` on PostgreSQL.

The local keyring file (``keys.keyring``) is the embedded default, for one
node. A cluster keeps the same records (KEK versions, the rotation link, the
index key, each customer's wrapped DEKs and erasure tombstones) in the
PostgreSQL database its journal uses, so that any node may go and erasure
reaches every node at once (:mod:`.postgres`). Both pass one conformance
suite (``tests/conformance/keys_suite.py``).
"""

from replicator.keystore.postgres import PgKeyStore

__all__ = ["PgKeyStore"]
