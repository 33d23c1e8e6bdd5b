"""Replication: moving ciphertext between regions.

``copy`` is the one function that copies a replica (workers and reconciler
alike), ``locks`` the per-name locks every write and copy holds, ``workers``
the loop that carries out the journal's rows.
"""

from replicator.replication.copy import copy_newest, copy_over
from replicator.replication.locks import NameLocks
from replicator.replication.workers import Workers

__all__ = ["NameLocks", "Workers", "copy_newest", "copy_over"]
