"""replicator: the service that keeps encrypted blobs in two regions (see ``docs/architecture.md``)."""
