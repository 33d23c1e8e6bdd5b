"""The nightly reconciler: a pure planner over a merge-join of both regions' listings, and an executor.

* :mod:`.planner` — what to do with one name (no I/O; the decision table).
* :mod:`.executor` — the walk, bounded concurrency, re-checks, the checkpoint watermark.
* :mod:`.partition` — ``--prefix`` / ``--partition i/n`` as prefix sets of the tag space.
* :mod:`.job` — one run of one partition: lease, start checks, resume, checkpoint.
* :mod:`.report`, :mod:`.progress` — the JSON report and the terminal progress bar.
* :mod:`.command` — ``replicator reconcile``.
"""

from replicator.reconcile.executor import Reconciler
from replicator.reconcile.job import CannotRun, DestroyedKeys, Options, run_job
from replicator.reconcile.planner import DELETING, KINDS, Action, Entry, plan
from replicator.reconcile.report import Report

__all__ = [
    "DELETING",
    "KINDS",
    "Action",
    "CannotRun",
    "DestroyedKeys",
    "Entry",
    "Options",
    "Reconciler",
    "Report",
    "plan",
    "run_job",
]
