"""The progress bar a reconcile shows on a terminal (rich): share of the tag space done, rate, ETA.

Customer tags are uniform HMAC output, so how far the walk has come through
the tag space is how far it has come through the objects: the bar needs no
count beforehand (which would cost a listing of its own).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from replicator.reconcile.partition import fraction, span
from replicator.reconcile.report import Report

STEPS = 10_000


class ProgressBar:
    """Call with ``(last name, report)``; use as a context manager around the run."""

    def __init__(self, prefixes: list[str], *, console: Console | None = None, label: str = "reconcile"):
        self._start, self._end = span(prefixes)
        self._began = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn(
                "{task.fields[names]} names · {task.fields[rate]}/s · {task.fields[actions]} actions"
                " · {task.fields[errors]} errors"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(label, total=STEPS, names=0, rate="0", actions=0, errors=0)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def __call__(self, name: str, report: Report) -> None:
        where = fraction(name) if name else None
        completed = None  # None: the bar stays where it is
        if report.finished is not None and not report.stopped:
            completed = STEPS
        elif where is not None and self._end > self._start:
            done = min(max((where - self._start) / (self._end - self._start), 0.0), 1.0)
            completed = int(done * STEPS)
        elapsed = max(time.monotonic() - self._began, 1e-6)
        self._progress.update(
            self._task,
            completed=completed,
            names=f"{report.names:,}",
            rate=f"{report.names / elapsed:,.0f}",
            actions=f"{report.planned_total:,}",
            errors=report.error_count,
        )
