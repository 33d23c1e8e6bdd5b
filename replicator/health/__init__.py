"""Health: the probes ``replicator health`` runs and grades, and ``/readyz``, built from the same probes."""
