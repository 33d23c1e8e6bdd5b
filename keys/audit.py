"""Tamper-evident audit log: append-only JSON lines, hash-chained.

Record format (one line, UTF-8 JSON, keys in this order)::

    {"seq":1,"time":"2025-01-01T00:00:00.000000Z","principal":"web",
     "action":"read","customer_tag":"…","class":"account","name_tag":"…",
     "purpose":"service","outcome":"allowed","prev":"<64 hex>","hash":"<64 hex>"}

* ``seq`` counts from 1 with no gaps.
* ``hash`` is SHA-256 of the record's exact bytes up to ``prev`` — that is the
  line with its ``,"hash":"…"`` suffix and newline removed and ``}`` put
  back. A record carries its own hash so that an edited record is reported
  at its own line, not at the one after.
* ``prev`` is the previous record's ``hash`` (genesis: 64 zeros), so the
  chain runs over exact bytes: an edited, deleted, reordered or inserted
  record breaks it, and ``verify`` names the first line that is wrong.
* A chain alone cannot show that records were cut off the end, nor stop
  someone who rewrites the whole file. Keep checkpoints elsewhere (``head``
  after an append, or ``VerifyResult.head``): ``verify(path,
  anchor=checkpoint)`` fails if that record is missing or different, and
  ``verify(path, from_checkpoint=cp)`` checks only the records after it.

What a record holds: principal *name* (never its token), action, tags (never
the customer id or object name: ``append`` accepts only tag-shaped values),
data class, purpose and outcome, all checked against tight patterns so no
free text, plaintext or key can enter the log.

Fail-closed rule: ``append`` returns only after the line is written with
O_APPEND and fsynced.

``append_async`` (the service's path) is group committed (``keys._group_commit``):
records queued meanwhile share one ``write`` and one ``fsync``, and each
caller still returns only once its own record is durable. If it raises — ``AuditUnavailable`` when the log cannot
be written (disk full, read-only, closed, damaged), ``ValueError`` for a bad
field — the caller **must refuse** the decrypt it was about to record. After
a failed write or fsync the log refuses every later append (the state of the
file is unknown, as after a failed fsync in PostgreSQL) until it is reopened.

One writer per file: ``open`` takes an exclusive ``flock`` (a second writer
gets ``AuditUnavailable``); several service processes each keep their own
log. Reopening continues the chain from the last line. A torn last line (no
newline: a crash inside an append, which therefore never returned and
authorised nothing) is cut off and the cut is itself recorded (action
``audit.torn-tail``, outcome ``truncated-<n>-bytes``). Any other damage at
the tail makes ``open`` raise ``AuditCorrupt`` until an operator has run
verify and repaired the file.

Retention: records are kept at least 24 months (``RETENTION_MONTHS``; the
Canadian breach-of-security-safeguards record rule), and the config's
``audit_retention_months`` may raise that, never lower it. Nothing here ever
removes a record: the log is append-only and the only cut is the torn tail
above, which is itself recorded. The file grows by about 300 bytes a record.
Records older than the retention (:func:`retention_cutoff`) may be moved off
the host; :func:`export` writes any span of the log, verified first, as the
same JSON lines, so a whole export passes ``replicator audit verify`` like
the log itself (``replicator audit export``).
"""

from __future__ import annotations

import calendar
import errno
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from keys._group_commit import GroupCommit
from keys.tags import is_tag

GENESIS = "0" * 64
RETENTION_MONTHS = 24
MAX_LINE = 4096  # a valid record is well under 1 KiB
_MAX_TORN = 64 * 1024  # a longer unterminated tail is not one torn record
_FIELDS = ("seq", "time", "principal", "action", "customer_tag", "class", "name_tag", "purpose", "outcome", "prev")
_HASH_SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})"\}\Z')
_PRINCIPAL = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
_WORD = re.compile(r"[a-z][a-z0-9._:-]{0,63}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditUnavailable(Exception):
    """The audit log cannot record: the caller must refuse the read."""


class AuditCorrupt(AuditUnavailable):
    """The log's tail is damaged; appending waits for an operator."""


@dataclass(frozen=True)
class Checkpoint:
    """Record ``seq`` starts at byte ``offset`` and has ``hash``."""

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _encode(fields: dict[str, Any]) -> tuple[bytes, str]:
    """(line with newline, its hash) for the record ``fields`` (no hash)."""
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n', digest


def _decode(line: bytes) -> tuple[dict[str, Any], str]:
    """Parse one line (without newline); raise ValueError saying what is wrong."""
    m = _HASH_SUFFIX.search(line)
    if m is None:
        raise ValueError("record has no hash")
    body = line[: m.start()] + b"}"
    if hashlib.sha256(body).hexdigest() != m.group(1).decode():
        raise ValueError("record hash does not match its contents (record edited)")
    try:
        fields = json.loads(body)
    except ValueError:
        raise ValueError("record is not valid JSON") from None
    if not isinstance(fields, dict) or tuple(fields) != _FIELDS:
        raise ValueError("record does not have the audit fields in order")
    if not isinstance(fields["seq"], int) or not _HEX64.fullmatch(str(fields["prev"])):
        raise ValueError("record has a bad seq or prev")
    return fields, m.group(1).decode()


def _check(value: object, pattern: re.Pattern[str], what: str, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"audit field {what} is missing or malformed")


class AuditLog:
    """The writer. Open with ``AuditLog.open(path)``; thread-safe."""

    def __init__(self, path: Path, fd: int, tail: _Tail) -> None:
        self._path = path
        self._fd: int | None = fd
        self._seq, self._prev, self._size, self._last_offset = tail.seq, tail.hash, tail.size, tail.offset
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._group: GroupCommit[_Record, Checkpoint] = GroupCommit(self._write_batch)
        st = os.fstat(fd)
        self._identity = (st.st_dev, st.st_ino)

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self._path)!r}, seq={self._seq})"

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> AuditLog:
        """Open or create the log (mode 0600) and continue its chain."""
        path = Path(path)
        existed = os.path.lexists(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditUnavailable(f"cannot open audit log {path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AuditUnavailable(f"audit log {path} is open in another writer") from None
            if not existed:
                _fsync_dir(path.parent)
            tail = _recover_tail(fd, path)
            log = cls(path, fd, tail)
        except OSError as exc:
            os.close(fd)
            raise AuditUnavailable(f"cannot open audit log {path}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        if tail.cut:
            try:
                torn = _Record("audit", "audit.torn-tail", f"truncated-{tail.cut}-bytes", None, None, None, None)
                log._write_batch([torn])
            except BaseException:
                log.close()
                raise
        return log

    @property
    def path(self) -> Path:
        return self._path

    def problem(self) -> str | None:
        """Why the next append would be refused (closed, an earlier write failed, file gone), or None."""
        with self._lock:
            return self._problem()

    def _problem(self) -> str | None:
        # A log whose file was removed or replaced would take records no one
        # will ever read: refuse, so the read it records is refused too.
        if self._fd is None:
            return "audit log is closed"
        if self._broken is not None:
            return f"it failed earlier ({self._broken})"
        try:
            if os.fstat(self._fd).st_nlink == 0:
                return "audit log file was removed"
            st = os.stat(self._path)
        except OSError as exc:
            return exc.strerror or "cannot stat the audit log"
        if (st.st_dev, st.st_ino) != self._identity:
            return "audit log file was replaced"
        return None

    @property
    def head(self) -> Checkpoint | None:
        """The last record, for anchoring elsewhere (None for an empty log)."""
        with self._lock:
            if self._seq == 0:
                return None
            return Checkpoint(self._seq, self._last_offset, self._prev)

    def append(
        self,
        *,
        principal: str,
        action: str,
        outcome: str,
        customer_tag: str | None = None,
        data_class: str | None = None,
        name_tag: str | None = None,
        purpose: str | None = None,
    ) -> Checkpoint:
        """Write one record durably and return its checkpoint. Raises
        ``AuditUnavailable`` or ``ValueError``; either way refuse the read."""
        record = self._checked(principal, action, outcome, customer_tag, data_class, name_tag, purpose)
        return self._write_batch([record])[0]

    @staticmethod
    def _checked(
        principal: str,
        action: str,
        outcome: str,
        customer_tag: str | None = None,
        data_class: str | None = None,
        name_tag: str | None = None,
        purpose: str | None = None,
    ) -> _Record:
        _check(principal, _PRINCIPAL, "principal", False)
        _check(action, _WORD, "action", False)
        _check(outcome, _WORD, "outcome", False)
        _check(data_class, _NAME, "class", True)
        _check(purpose, _NAME, "purpose", True)
        for what, value in (("customer_tag", customer_tag), ("name_tag", name_tag)):
            if value is not None and not is_tag(value):
                raise ValueError(f"audit field {what} must be a tag, not a clear identifier")
        return _Record(principal, action, outcome, customer_tag, data_class, name_tag, purpose)

    async def append_async(self, **fields: Any) -> Checkpoint:
        """``append`` (the same fields), group committed: returns once this record is durable."""
        return await self._group.append(self._checked(**fields))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # releases the flock
                self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_batch(self, records: list[_Record]) -> list[Checkpoint]:
        """Chain ``records`` on, write them with one ``write`` and make them durable with one ``fsync``."""
        with self._lock:
            problem = self._problem()
            if problem is not None:
                raise AuditUnavailable(f"audit log {self._path}: {problem}; reopen it")
            seq, prev, offset = self._seq, self._prev, self._size
            lines: list[bytes] = []
            checkpoints: list[Checkpoint] = []
            for r in records:
                seq += 1
                line, prev = _encode(
                    {
                        "seq": seq,
                        "time": _now(),
                        "principal": r.principal,
                        "action": r.action,
                        "customer_tag": r.customer_tag,
                        "class": r.data_class,
                        "name_tag": r.name_tag,
                        "purpose": r.purpose,
                        "outcome": r.outcome,
                        "prev": prev,
                    }
                )
                checkpoints.append(Checkpoint(seq, offset, prev))
                lines.append(line)
                offset += len(line)
            data = b"".join(lines)
            fd = self._fd
            assert fd is not None  # _problem() said so
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.EIO, "short write")
                os.fsync(fd)
            except OSError as exc:
                self._broken = exc.strerror or "write failed"
                raise AuditUnavailable(f"cannot write audit log {self._path}: {self._broken}") from exc
            self._last_offset = checkpoints[-1].offset
            self._seq, self._prev, self._size = seq, prev, offset
            return checkpoints


@dataclass(frozen=True)
class _Record:
    """One record's fields, checked, before it is chained."""

    principal: str
    action: str
    outcome: str
    customer_tag: str | None
    data_class: str | None
    name_tag: str | None
    purpose: str | None


@dataclass(frozen=True)
class _Tail:
    seq: int  # of the last record, 0 if none
    hash: str  # of the last record, GENESIS if none
    offset: int  # where the last record starts
    size: int  # file size after any cut
    cut: int  # bytes of torn tail cut off


def _recover_tail(fd: int, path: Path) -> _Tail:
    """Find the last record, cutting off a torn unterminated tail."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail(0, GENESIS, 0, 0, 0)
    # Read back from the end until the start of the last complete line.
    block, data, start = 4096, b"", size
    while start > 0:
        step = min(block, start)
        start -= step
        data = os.pread(fd, step, start) + data
        if data.count(b"\n") >= 2 or (start == 0) or len(data) > _MAX_TORN + MAX_LINE:
            break
    cut = 0
    if not data.endswith(b"\n"):
        torn = len(data) - (data.rfind(b"\n") + 1)
        if torn > _MAX_TORN:
            raise AuditCorrupt(f"audit log {path} ends in {torn} bytes with no newline; run audit verify")
        os.ftruncate(fd, size - torn)
        os.fsync(fd)
        size, data, cut = size - torn, data[: len(data) - torn], torn
        if size == 0:
            return _Tail(0, GENESIS, 0, 0, cut)
    body = data[:-1]
    nl = body.rfind(b"\n")
    if nl < 0 and start > 0:
        raise AuditCorrupt(f"audit log {path} has an over-long last record; run audit verify")
    try:
        fields, digest = _decode(body[nl + 1 :])
    except ValueError as exc:
        raise AuditCorrupt(f"audit log {path} has a damaged last record ({exc}); run audit verify") from None
    return _Tail(fields["seq"], digest, start + nl + 1, size, cut)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(
    path: str | os.PathLike[str],
    *,
    from_checkpoint: Checkpoint | None = None,
    anchor: Checkpoint | None = None,
) -> VerifyResult:
    """Check the chain and report the first line that is wrong.

    From the start of the file, or, with ``from_checkpoint``, from that record
    on (which must still be there, unchanged): earlier records are not read.
    With ``anchor``, the anchored record must be in the part checked with the
    same hash, which catches records cut off the end."""
    path = Path(path)
    if from_checkpoint is not None:
        offset, seq, prev, lineno = from_checkpoint.offset, from_checkpoint.seq - 1, None, from_checkpoint.seq
    else:
        offset, seq, prev, lineno = 0, 0, GENESIS, 1
    good = 0
    head: Checkpoint | None = None

    def bad(reason: str) -> VerifyResult:
        return VerifyResult(False, good, lineno, reason, head)

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
                fields, digest = _decode(raw[:-1])
            except ValueError as exc:
                return bad(str(exc))
            if fields["seq"] != seq + 1:
                return bad(f"expected seq {seq + 1}, found {fields['seq']} (record deleted, moved or inserted)")
            if prev is None:  # the checkpointed record itself
                if digest != from_checkpoint.hash:  # type: ignore[union-attr]
                    return bad("record at the checkpoint differs from the checkpoint")
            elif fields["prev"] != prev:
                return bad("prev does not match the previous record (record deleted, moved or inserted)")
            if anchor is not None and fields["seq"] == anchor.seq and digest != anchor.hash:
                return bad("record differs from the anchor checkpoint")
            seq, prev, good, lineno = fields["seq"], digest, good + 1, lineno + 1
            head = Checkpoint(seq, start, digest)
    if from_checkpoint is not None and good == 0:
        return VerifyResult(False, 0, from_checkpoint.seq, "checkpointed record is missing (log truncated)", None)
    if anchor is not None and seq < anchor.seq:
        return VerifyResult(
            False, good, lineno, f"log ends at seq {seq}, before anchor seq {anchor.seq} (truncated)", head
        )
    return VerifyResult(True, good, None, "ok", head)


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
    path: str | os.PathLike[str], *, since: datetime | None = None, until: datetime | None = None
) -> Iterator[bytes]:
    """The records of the log at ``path`` with ``since <= time < until``, each its exact line (newline included).

    The whole chain is verified first: a broken log raises ``ValueError`` naming
    the first bad line, before anything is given out. A span that starts at
    record 1 verifies on its own; a later span verifies from the record before it.
    """
    result = verify(path)
    if not result.ok:
        raise ValueError(
            f"audit log {path} does not verify (line {result.first_bad_line}: {result.reason}); nothing exported"
        )
    with open(path, "rb") as f:
        for _ in range(result.records):  # only what verify vouched for, even if the log grew since
            line = f.readline(MAX_LINE + 1)
            when = record_time(_decode(line[:-1])[0])
            if (since is None or when >= since) and (until is None or when < until):
                yield line
