"""The paths through the service: one module per path (see :mod:`replicator.paths.service`)."""

from replicator.paths.lookup import HeadResult, Lookup, Replica
from replicator.paths.read import Reading
from replicator.paths.service import Service
from replicator.paths.write import WriteResult

__all__ = ["HeadResult", "Lookup", "Reading", "Replica", "Service", "WriteResult"]
