"""The service: every path through it, gathered on one object the HTTP handlers and the CLI call.

Theory of operation
-------------------
Every call is authorized against the policy first (:mod:`.base`). An object
lives at ``v1/<customer tag>/<class>/<name tag>`` in both regions
(:class:`~replicator.layout.ObjectPath`), as ciphertext, with the metadata
of :mod:`replicator.layout` (version, class, write time, DEK id, sealed name).

One module per path:

=================  ==========================================================
:mod:`.lookup`     both regions' heads → which replica wins, what to repair
                   (a pure decision); ``HEAD``
:mod:`.write`      SIN and size checks, encrypt, put to both, acknowledge
:mod:`.read`       authorize, audit (fail closed), stream the winner decrypted
:mod:`.delete`     a tombstone in both regions
:mod:`.versions`   what a write or delete keeps of what it replaces; kept versions
:mod:`.restore`    a kept version made current again, as a new version
:mod:`.listing`    one customer's live objects of a class, names decrypted
:mod:`.export`     subject-access export: every live object, one tar stream
:mod:`.erasure`    crypto-shred the key now, then sweep both regions
=================  ==========================================================

Writes and replication workers hold the name's lock
(:class:`~replicator.replication.NameLocks`), so a copy never overwrites a
newer write.
"""

from __future__ import annotations

from replicator.paths.delete import DeletePath
from replicator.paths.erasure import ErasurePath
from replicator.paths.export import ExportPath
from replicator.paths.restore import RestorePath


class Service(RestorePath, DeletePath, ExportPath, ErasurePath):
    """Every path, on the resources of one :class:`~replicator.runtime.Runtime` (``http/app.py``, ``cli/erase.py``)."""
