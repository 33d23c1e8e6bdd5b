"""What a reconcile run did, as the JSON report the CLI prints, and the copy of it every run keeps.

Names in the report are region names (``v1/<customer tag>/<class>/<name
tag>``): tags, never customer identifiers or real object names. Lists of
actions and errors are capped (``LIST_LIMIT`` entries each; the counts are
always complete), so a report stays small whatever the divergence.

Kept reports (:func:`keep`): every run, dry or not, and one that could not
start, writes its report to a new file in the config's ``[reconcile]
report_dir``, ``reconcile-<UTC start>-<i>of<n>-<random>.json``, created
exclusively (never overwritten, never removed by the replicator): they are
kept as long as the audit records (``audit_retention_months``), and the
run's ``reconcile.run`` audit record names its file.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from replicator.reconcile.planner import KINDS, Action

LIST_LIMIT = 10_000
OUTCOMES = ("planned", "done", "skipped", "failed")


@dataclass
class Report:
    regions: Mapping[str, str]  # side ("a", "b") -> region name
    dry_run: bool = False
    scope: dict = field(default_factory=dict)
    names: int = 0  # names looked at (past the resume point)
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {k: dict.fromkeys(OUTCOMES, 0) for k in KINDS})
    bytes_planned: int = 0
    bytes_copied: int = 0
    deletes: int = 0  # region deletes reserved against --max-delete
    stopped: str | None = None  # why the run ended early: max-delete, lease-lost, ...
    checkpoint: str | None = None  # last name done (every name at or before it is done)
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    actions: list[dict] = field(default_factory=list)
    segments: dict[str, dict] = field(default_factory=dict)  # region -> its orphan-segment sweep
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def _region(self, side: str | None) -> str | None:
        return self.regions[side] if side else None

    def planned(self, action: Action) -> None:
        self.counts[action.kind]["planned"] += 1
        self.bytes_planned += action.size
        if len(self.actions) < LIST_LIMIT:
            item: dict[str, str | None] = {"action": action.kind, "name": action.name}
            if action.src:
                item["from"] = self._region(action.src)
            if action.dst:
                item["region" if action.src is None else "to"] = self._region(action.dst)
            self.actions.append(item)

    def outcome(self, action: Action, outcome: str) -> None:
        self.counts[action.kind][outcome] += 1

    def failed(
        self, action: Action | None, error: BaseException | str, *, name: str | None = None, region: str | None = None
    ) -> None:
        if action is not None:
            self.counts[action.kind]["failed"] += 1
        self.error_count += 1
        if len(self.errors) < LIST_LIMIT:
            text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            item = {"name": action.name if action else name, "error": text[:500]}
            if action is not None:
                item["action"] = action.kind
            where = region or (self._region(action.dst) if action is not None else None)
            if where:
                item["region"] = where
            self.errors.append(item)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 when something failed or the run stopped early."""
        return 1 if self.error_count or self.stopped else 0

    def to_json(self) -> dict:
        end = self.finished or time.time()
        return {
            "started": datetime.fromtimestamp(self.started, UTC).isoformat(),
            "duration_s": round(end - self.started, 3),
            "dry_run": self.dry_run,
            "regions": {"a": self.regions["a"], "b": self.regions["b"]},
            "scope": self.scope,
            "names": self.names,
            "counts": {k: v for k, v in self.counts.items() if any(v.values())},
            "bytes": {"planned": self.bytes_planned, "copied": self.bytes_copied},
            "deletes": self.deletes,
            "stopped": self.stopped,
            "checkpoint": self.checkpoint,
            "error_count": self.error_count,
            "errors": self.errors,
            "actions": self.actions,
            "actions_truncated": sum(c["planned"] for c in self.counts.values()) > len(self.actions),
            "segments": self.segments,
            "exit_code": self.exit_code,
        }

    @property
    def planned_total(self) -> int:
        return sum(c["planned"] for c in self.counts.values())


def kept_name(started: float, partition: tuple[int, int]) -> str:
    """The id of a run's kept report: ``<UTC start>-<i>of<n>-<random>``, lower case (an audit outcome holds it)."""
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dt%H%M%Sz")
    return f"{stamp}-{partition[0]}of{partition[1]}-{secrets.token_hex(3)}"


def keep(report: dict, directory: Path, report_id: str) -> Path:
    """Write ``report`` as ``directory/reconcile-<report_id>.json``, a new file (mode 0640), durably."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"reconcile-{report_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)  # never over another run's
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
