"""keys.audit: the hash chain, every kind of tampering, and failing closed."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from keys.audit import (
    GENESIS,
    AuditCorrupt,
    AuditLog,
    AuditUnavailable,
    Checkpoint,
    verify,
)

CTAG = "a" * 32
NTAG = "b" * 32


def _append(log: AuditLog) -> Checkpoint:
    return log.append(
        principal="web",
        action="read",
        outcome="allowed",
        customer_tag=CTAG,
        data_class="account",
        name_tag=NTAG,
        purpose="service",
    )


@pytest.fixture
def path(tmp_path):
    return tmp_path / "audit.log"


@pytest.fixture
def log5(path):
    with AuditLog.open(path) as log:
        for _ in range(5):
            _append(log)
    return path


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path, lines) -> None:
    path.write_bytes(b"".join(lines))


def test_records_are_chained_json_lines(log5):
    lines = _lines(log5)
    assert len(lines) == 5
    prev = GENESIS
    for n, line in enumerate(lines, 1):
        rec = json.loads(line)
        assert list(rec) == [
            "seq",
            "time",
            "principal",
            "action",
            "customer_tag",
            "class",
            "name_tag",
            "purpose",
            "outcome",
            "prev",
            "hash",
        ]
        assert rec["seq"] == n and rec["prev"] == prev and rec["time"].endswith("Z")
        body = line[: line.index(b',"hash":')] + b"}"
        assert hashlib.sha256(body).hexdigest() == rec["hash"]
        prev = rec["hash"]
    assert stat.S_IMODE(log5.stat().st_mode) == 0o600


def test_verify_good_log(log5):
    result = verify(log5)
    assert (result.ok, result.records, result.first_bad_line, result.reason) == (True, 5, None, "ok")
    assert result.head.seq == 5


def test_verify_empty_log(path):
    AuditLog.open(path).close()
    assert verify(path).ok and verify(path).records == 0


def test_edited_record_is_found_at_its_line(log5):
    lines = _lines(log5)
    lines[2] = lines[2].replace(b'"allowed"', b'"denied"')
    _write(log5, lines)
    result = verify(log5)
    assert (result.ok, result.first_bad_line, result.records) == (False, 3, 2)
    assert "edited" in result.reason


def test_edited_record_with_recomputed_hash_breaks_the_next_link(log5):
    lines = _lines(log5)
    rec = json.loads(lines[2])
    rec["outcome"] = "denied"
    del rec["hash"]
    body = json.dumps(rec, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    lines[2] = body[:-1] + f',"hash":"{digest}"}}\n'.encode()
    _write(log5, lines)
    result = verify(log5)
    assert (result.ok, result.first_bad_line) == (False, 4)


def test_deleted_record_is_found(log5):
    lines = _lines(log5)
    del lines[1]
    _write(log5, lines)
    result = verify(log5)
    assert (result.ok, result.first_bad_line) == (False, 2)
    assert "expected seq 2" in result.reason


def test_reordered_records_are_found(log5):
    lines = _lines(log5)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log5, lines)
    assert verify(log5).first_bad_line == 2


def test_inserted_record_is_found(log5):
    lines = _lines(log5)
    lines.insert(3, lines[2])
    _write(log5, lines)
    assert verify(log5).first_bad_line == 4


def test_garbage_line_is_found(log5):
    lines = _lines(log5)
    lines[4] = b"hello\n"
    _write(log5, lines)
    assert (verify(log5).first_bad_line, verify(log5).records) == (5, 4)


def test_truncation_is_found_with_an_anchor(log5):
    anchor = verify(log5).head
    lines = _lines(log5)
    _write(log5, lines[:3])
    assert verify(log5).ok  # the chain alone cannot see a cut tail...
    result = verify(log5, anchor=anchor)  # ...an anchor kept elsewhere can
    assert not result.ok and "truncated" in result.reason


def test_torn_tail_is_reported_by_verify(log5):
    with open(log5, "ab") as f:
        f.write(b'{"seq":6,"ti')
    result = verify(log5)
    assert (result.ok, result.first_bad_line, result.records) == (False, 6, 5)
    assert "torn" in result.reason


def test_anchor_mismatch_is_found(log5):
    anchor = Checkpoint(seq=3, offset=0, hash="f" * 64)
    result = verify(log5, anchor=anchor)
    assert (result.ok, result.first_bad_line) == (False, 3)


def test_verify_from_checkpoint(path):
    with AuditLog.open(path) as log:
        for _ in range(3):
            _append(log)
        cp = log.head
        for _ in range(3):
            _append(log)
    result = verify(path, from_checkpoint=cp)
    assert (result.ok, result.records) == (True, 4)  # the checkpointed record and the 3 after
    # Earlier records are not read: damage there is not seen from the checkpoint.
    lines = _lines(path)
    lines[0] = b"x" * (len(lines[0]) - 1) + b"\n"
    _write(path, lines)
    assert verify(path, from_checkpoint=cp).ok
    assert not verify(path).ok
    # Damage at or after it is.
    lines[4] = lines[4].replace(b'"allowed"', b'"denied"')
    _write(path, lines)
    assert verify(path, from_checkpoint=cp).first_bad_line == 5
    # A checkpoint that no longer matches its record fails.
    assert not verify(path, from_checkpoint=Checkpoint(cp.seq, cp.offset, "0" * 64)).ok
    _write(path, lines[:2])
    assert "missing" in verify(path, from_checkpoint=cp).reason


# ----- reopening --------------------------------------------------------------


def test_reopen_continues_the_chain(log5):
    with AuditLog.open(log5) as log:
        assert log.head.seq == 5
        cp = _append(log)
    assert cp.seq == 6
    result = verify(log5)
    assert result.ok and result.records == 6 and result.head == cp


def test_reopen_cuts_a_torn_tail_and_records_the_cut(log5):
    with open(log5, "ab") as f:
        f.write(b'{"seq":6,"time":"20')
    with AuditLog.open(log5) as log:
        _append(log)
    result = verify(log5)
    assert result.ok and result.records == 7
    cut = json.loads(_lines(log5)[5])
    assert (cut["action"], cut["outcome"], cut["principal"]) == ("audit.torn-tail", "truncated-19-bytes", "audit")


def test_reopen_refuses_a_damaged_last_record(log5):
    lines = _lines(log5)
    lines[-1] = lines[-1].replace(b'"allowed"', b'"denied"')
    _write(log5, lines)
    with pytest.raises(AuditCorrupt, match="damaged last record"):
        AuditLog.open(log5)


def test_only_one_writer(log5):
    with AuditLog.open(log5):
        with pytest.raises(AuditUnavailable, match="another writer"):
            AuditLog.open(log5)


# ----- fail closed ------------------------------------------------------------


def test_disk_full_raises_audit_unavailable_and_stays_refused():
    log = AuditLog.open("/dev/full")  # every write fails with ENOSPC
    try:
        with pytest.raises(AuditUnavailable, match="No space left"):
            _append(log)
        with pytest.raises(AuditUnavailable, match="failed earlier"):
            _append(log)
    finally:
        log.close()


def test_closed_log_raises_audit_unavailable(path):
    log = AuditLog.open(path)
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        _append(log)


def test_unopenable_path_raises_audit_unavailable(tmp_path):
    with pytest.raises(AuditUnavailable):
        AuditLog.open(tmp_path)  # a directory
    with pytest.raises(AuditUnavailable):
        AuditLog.open(tmp_path / "missing-dir" / "audit.log")


def test_fsync_failure_raises_audit_unavailable(path, monkeypatch):
    log = AuditLog.open(path)

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(AuditUnavailable, match="Input/output error"):
        _append(log)
    log.close()


# ----- nothing secret gets in -------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        {"customer_tag": "alice@example.com"},  # a clear identifier, not a tag
        {"name_tag": "profile.json"},
        {"principal": "rpl_token with spaces"},
        {"action": "READ"},
        {"outcome": "allowed\nforged line"},
        {"purpose": "x" * 65},
        {"data_class": 7},
        {"principal": None},
    ],
)
def test_fields_are_validated(path, override):
    fields = dict(
        principal="web",
        action="read",
        outcome="allowed",
        customer_tag=CTAG,
        data_class="account",
        name_tag=NTAG,
        purpose="service",
    )
    fields.update(override)
    with AuditLog.open(path) as log:
        with pytest.raises(ValueError):
            log.append(**fields)
    assert path.read_bytes() == b""


def test_optional_fields_may_be_null(path):
    with AuditLog.open(path) as log:
        log.append(principal="ops", action="admin.verify", outcome="ok")
    rec = json.loads(path.read_bytes())
    assert rec["customer_tag"] is None and rec["purpose"] is None


@pytest.mark.asyncio
async def test_append_async(path):
    with AuditLog.open(path) as log:
        cp = await log.append_async(principal="web", action="read", outcome="allowed")
    assert cp.seq == 1 and verify(path).ok


def test_problem_reports_what_would_refuse_the_next_append(tmp_path):
    log = AuditLog.open(tmp_path / "audit.log")
    assert log.problem() is None
    (tmp_path / "audit.log").unlink()
    assert log.problem() == "audit log file was removed"
    log.close()
    assert log.problem() == "audit log is closed"


# -- group commit (append_async) ------------------------------------------------------------------


def _fields(i: int) -> dict:
    return dict(principal=f"p{i}", action="read", outcome="allowed", customer_tag=CTAG, purpose="service")


async def test_concurrent_appends_share_fsyncs_and_each_is_durable_in_order(path, monkeypatch):
    import asyncio

    import keys.audit as audit

    fsyncs = []
    real = os.fsync
    monkeypatch.setattr(audit.os, "fsync", lambda fd: (fsyncs.append(fd), real(fd))[1])
    with AuditLog.open(path) as log:
        checkpoints = await asyncio.gather(*(log.append_async(**_fields(i)) for i in range(200)))
        assert sorted(c.seq for c in checkpoints) == list(range(1, 201))
        assert log.head == max(checkpoints, key=lambda c: c.seq)
    assert 1 <= len(fsyncs) < 200  # one per batch, not one per record
    result = verify(path)
    assert result.ok and result.records == 200
    lines = [json.loads(line) for line in _lines(path)]
    by_seq = {c.seq: c for c in checkpoints}
    for record in lines:  # each caller got its own record's checkpoint
        assert by_seq[record["seq"]].hash == record["hash"]
        assert record["principal"] == f"p{checkpoints.index(by_seq[record['seq']])}"


async def test_a_failed_group_fsync_refuses_every_waiter_and_every_later_append(path, monkeypatch):
    import asyncio

    import keys.audit as audit

    def fail(fd):
        raise OSError(5, "Input/output error")

    with AuditLog.open(path) as log:
        await log.append_async(**_fields(0))
        monkeypatch.setattr(audit.os, "fsync", fail)
        results = await asyncio.gather(*(log.append_async(**_fields(i)) for i in range(10)), return_exceptions=True)
        assert all(isinstance(r, AuditUnavailable) for r in results), results
        monkeypatch.undo()
        with pytest.raises(AuditUnavailable):
            await log.append_async(**_fields(99))
        with pytest.raises(ValueError):  # a bad field is refused to its own caller, before any batch
            await log.append_async(**{**_fields(1), "customer_tag": "alice@example.com"})


async def test_a_cancelled_waiter_leaves_its_batch_whole(path):
    import asyncio

    with AuditLog.open(path) as log:
        tasks = [asyncio.ensure_future(log.append_async(**_fields(i))) for i in range(20)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[3], asyncio.CancelledError)
    assert verify(path).ok  # the cancelled reader's record may be there; the chain is whole either way
