"""Tamper-evident audit log: append-only JSON lines, chained by HMAC under the audit key.

Record format (one line, UTF-8 JSON, keys in this order)::

    {"seq":1,"time":"2025-01-01T00:00:00.000000Z","principal":"web",
     "action":"read","customer_tag":"…","class":"account","name_tag":"…",
     "purpose":"service","outcome":"allowed","prev":"<64 hex>","mac":"<64 hex>"}

* ``seq`` counts from 1 with no gaps.
* ``mac`` is HMAC-SHA256, under the deployment's audit key (from the key
  provider: ``KeyProvider.audit_key()``), of the record's exact bytes up to
  ``prev`` — the line with its ``,"mac":"…"`` suffix and newline removed and
  ``}`` put back. A record carries its own MAC so that an edited record is
  reported at its own line, not at the one after. Logs written before the
  key (format 1) end each record in ``"hash"`` (plain SHA-256 of the same
  bytes) and stay verifiable; ``keys._audit_format`` has both formats.
* ``prev`` is the previous record's link (genesis: 64 zeros), so the chain
  runs over exact bytes: an edited, deleted, reordered or inserted record
  breaks it, and ``verify`` names the first line that is wrong. A file-level
  attacker without the key cannot re-chain an edited log: every MAC they
  make fails ``verify(path, key=…)`` at the first record they touched.
* Moving to the keyed format: opening an unkeyed log with a key appends an
  ``audit.keyed`` record (a MAC whose ``prev`` is the last unkeyed hash, so
  it anchors the old part) and every later record is keyed; an unkeyed
  record after a keyed one fails verify, and ``require_keyed`` fails a log
  with no keyed record at all (a whole file rewritten unkeyed). A keyed
  log opened without the key is refused (``AuditUnavailable``).
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

import errno
import fcntl
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from keys._audit_format import GENESIS, MAX_LINE, AuditKey, decode, encode
from keys._audit_verify import (
    RETENTION_MONTHS,
    Checkpoint,
    VerifyResult,
    check_retention,
    export,
    record_time,
    retention_cutoff,
    verify,
)
from keys._group_commit import GroupCommit
from keys.tags import is_tag

__all__ = [
    "GENESIS",
    "MAX_LINE",
    "RETENTION_MONTHS",
    "AuditBusy",
    "AuditCorrupt",
    "AuditKey",
    "AuditLog",
    "AuditUnavailable",
    "Checkpoint",
    "VerifyResult",
    "check_retention",
    "decode",
    "encode",
    "export",
    "record_time",
    "retention_cutoff",
    "verify",
]

_MAX_TORN = 64 * 1024  # a longer unterminated tail is not one torn record
_PRINCIPAL = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
_WORD = re.compile(r"[a-z][a-z0-9._:-]{0,63}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class AuditUnavailable(Exception):
    """The audit log cannot record: the caller must refuse the read."""


class AuditBusy(AuditUnavailable):
    """Another writer holds the log (its ``flock``): one may wait for it to close."""


class AuditCorrupt(AuditUnavailable):
    """The log's tail is damaged; appending waits for an operator."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _check(value: object, pattern: re.Pattern[str], what: str, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"audit field {what} is missing or malformed")


class AuditLog:
    """The writer. Open with ``AuditLog.open(path)``; thread-safe."""

    def __init__(self, path: Path, fd: int, tail: _Tail, key: AuditKey | None) -> None:
        self._path = path
        self._key = key
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
    def open(cls, path: str | os.PathLike[str], key: AuditKey | None = None) -> AuditLog:
        """Open or create the log (mode 0600) and continue its chain, keyed under ``key``.

        An unkeyed log opened with a key gets an ``audit.keyed`` record and goes on keyed; a keyed
        log opened without one is refused (``AuditUnavailable``): it would fall back to hashes."""
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
                raise AuditBusy(f"audit log {path} is open in another writer") from None
            if not existed:
                _fsync_dir(path.parent)
            tail = _recover_tail(fd, path, key)
            log = cls(path, fd, tail, key)
        except OSError as exc:
            os.close(fd)
            raise AuditUnavailable(f"cannot open audit log {path}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        opening: list[_Record] = []
        if tail.cut:
            opening.append(_Record("audit", "audit.torn-tail", f"truncated-{tail.cut}-bytes", None, None, None, None))
        if key is not None and tail.seq and not tail.keyed:  # an unkeyed chain goes on keyed from here
            opening.append(_Record("audit", "audit.keyed", key.key_id.replace("_", "-"), None, None, None, None))
        if opening:
            try:
                log._write_batch(opening)
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
                line, prev = encode(
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
                    },
                    self._key,
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
    keyed: bool  # the last record is keyed


def _recover_tail(fd: int, path: Path, key: AuditKey | None) -> _Tail:
    """Find the last record, cutting off a torn unterminated tail."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail(0, GENESIS, 0, 0, 0, False)
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
            return _Tail(0, GENESIS, 0, 0, cut, False)
    body = data[:-1]
    nl = body.rfind(b"\n")
    if nl < 0 and start > 0:
        raise AuditCorrupt(f"audit log {path} has an over-long last record; run audit verify")
    try:
        last = decode(body[nl + 1 :], key)
    except ValueError as exc:
        raise AuditCorrupt(f"audit log {path} has a damaged last record ({exc}); run audit verify") from None
    if last.keyed and key is None:
        raise AuditUnavailable(f"audit log {path} is keyed: open it with the audit key from the key provider")
    return _Tail(last.fields["seq"], last.link, start + nl + 1, size, cut, last.keyed)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
