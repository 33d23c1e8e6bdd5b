"""Checking an audit log's chain, and the retention and export built on it (``keys.audit`` has the rules)."""

from __future__ import annotations

import calendar
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keys._audit_format import GENESIS, MAX_LINE, AuditKey, decode

RETENTION_MONTHS = 24


@dataclass(frozen=True)
class Checkpoint:
    """Record ``seq`` starts at byte ``offset`` and has ``hash`` (its link: a hash or a MAC)."""

    seq: int
    offset: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records checked and found good
    first_bad_line: int | None  # 1-based line number (== seq in a good log)
    reason: str
    head: Checkpoint | None  # the last good record
    keyed: int = 0  # good records whose MAC was checked under the audit key
    unchecked: int = 0  # good keyed records whose MAC could not be checked (no key given)


def verify(
    path: str | os.PathLike[str],
    *,
    key: AuditKey | None = None,
    from_checkpoint: Checkpoint | None = None,
    anchor: Checkpoint | None = None,
    require_keyed: bool = False,
) -> VerifyResult:
    """Check the chain and report the first line that is wrong.

    With ``key`` every keyed record's MAC is checked (without it, only the links between them, and
    ``unchecked`` counts them). Once a keyed record is seen, an unkeyed one after it is wrong: that
    is a chain rewritten by someone without the key. ``require_keyed`` also fails a log that has
    records but no keyed one (a whole file rewritten unkeyed), for a deployment whose nodes hold
    the key, as every node does since the keyed format.

    From the start of the file, or, with ``from_checkpoint``, from that record on (which must still
    be there, unchanged): earlier records are not read. With ``anchor``, the anchored record must be
    in the part checked with the same hash, which catches records cut off the end."""
    path = Path(path)
    if from_checkpoint is not None:
        offset, seq, prev, lineno = from_checkpoint.offset, from_checkpoint.seq - 1, None, from_checkpoint.seq
    else:
        offset, seq, prev, lineno = 0, 0, GENESIS, 1
    good = keyed = unchecked = 0
    head: Checkpoint | None = None

    def bad(reason: str) -> VerifyResult:
        return VerifyResult(False, good, lineno, reason, head, keyed, unchecked)

    try:
        f = open(path, "rb")
    except OSError as exc:
        return VerifyResult(False, 0, None, f"cannot read {path}: {exc.strerror}", None)
    with f:
        f.seek(offset)
        while True:
            start = f.tell()
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                break
            if not raw.endswith(b"\n"):
                return bad("record too long" if len(raw) > MAX_LINE else "last record is incomplete (torn write)")
            try:
                record = decode(raw[:-1], key)
            except ValueError as exc:
                return bad(str(exc))
            fields, digest = record.fields, record.link
            if fields["seq"] != seq + 1:
                return bad(f"expected seq {seq + 1}, found {fields['seq']} (record deleted, moved or inserted)")
            if prev is None:  # the checkpointed record itself
                if digest != from_checkpoint.hash:  # type: ignore[union-attr]
                    return bad("record at the checkpoint differs from the checkpoint")
            elif fields["prev"] != prev:
                return bad("prev does not match the previous record (record deleted, moved or inserted)")
            if (keyed or unchecked) and not record.keyed:
                return bad("unkeyed record after keyed records (the chain was rewritten without the audit key)")
            if anchor is not None and fields["seq"] == anchor.seq and digest != anchor.hash:
                return bad("record differs from the anchor checkpoint")
            keyed += record.keyed and record.checked
            unchecked += record.keyed and not record.checked
            seq, prev, good, lineno = fields["seq"], digest, good + 1, lineno + 1
            head = Checkpoint(seq, start, digest)
    if from_checkpoint is not None and good == 0:
        return VerifyResult(False, 0, from_checkpoint.seq, "checkpointed record is missing (log truncated)", None)
    if anchor is not None and seq < anchor.seq:
        return VerifyResult(
            False, good, lineno, f"log ends at seq {seq}, before anchor seq {anchor.seq} (truncated)", head, keyed
        )
    if require_keyed and good and not (keyed or unchecked):
        first = from_checkpoint.seq if from_checkpoint is not None else 1
        return VerifyResult(
            False, 0, first, "no keyed record (the log was rewritten without the audit key)", None, 0, 0
        )
    return VerifyResult(True, good, None, "ok", head, keyed, unchecked)


# -- retention and export ------------------------------------------------------------------


def check_retention(months: int) -> int:
    """``months`` if it keeps records at least :data:`RETENTION_MONTHS`; ``ValueError`` otherwise."""
    if isinstance(months, bool) or not isinstance(months, int) or months < RETENTION_MONTHS:
        raise ValueError(f"audit records must be kept at least {RETENTION_MONTHS} months, not {months!r}")
    return months


def retention_cutoff(now: datetime, months: int = RETENTION_MONTHS) -> datetime:
    """The instant ``months`` calendar months before ``now``: records older than it are past retention.

    A day the earlier month lacks (31 August minus 6 months) becomes that month's last day.
    """
    check_retention(months)
    index = now.year * 12 + now.month - 1 - months
    year, month = divmod(index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def record_time(fields: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fields["time"])


def export(
    path: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    key: AuditKey | None = None,
    require_keyed: bool = False,
) -> Iterator[bytes]:
    """The records of the log at ``path`` with ``since <= time < until``, each its exact line (newline included).

    The whole chain is verified first (under ``key``, as :func:`verify`): a broken log raises
    ``ValueError`` naming the first bad line, before anything is given out. A span that starts at
    record 1 verifies on its own; a later span verifies from the record before it.
    """
    result = verify(path, key=key, require_keyed=require_keyed)
    if not result.ok:
        raise ValueError(
            f"audit log {path} does not verify (line {result.first_bad_line}: {result.reason}); nothing exported"
        )
    with open(path, "rb") as f:
        for _ in range(result.records):  # only what verify vouched for, even if the log grew since
            line = f.readline(MAX_LINE + 1)
            when = record_time(decode(line[:-1], None).fields)
            if (since is None or when >= since) and (until is None or when < until):
                yield line
