"""Audit retention: kept at least 24 months by default (never configurable lower), never pruned,
and exported as verifiable JSON lines with ``replicator audit export``."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from keys import KeyFile, LocalKeyring, audit
from keys.audit import RETENTION_MONTHS, AuditLog, check_retention, retention_cutoff, verify
from replicator.cli import main
from replicator.config import ConfigError, load_config
from replicator.embedded import CONFIG_NAME, ensure

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CTAG = "a" * 32


def _append(log: AuditLog, n: int) -> None:
    for _ in range(n):
        log.append(
            principal="web",
            action="read",
            outcome="allowed",
            customer_tag=CTAG,
            data_class="account",
            name_tag=CTAG,
            purpose="service",
        )


def _written_at(monkeypatch, when: datetime) -> None:
    """Records appended from now on carry ``when`` as their time (the log's own clock, moved)."""
    monkeypatch.setattr(audit, "_now", lambda: when.isoformat(timespec="microseconds").replace("+00:00", "Z"))


def _with_top_level(var, line: str) -> None:
    path = var / CONFIG_NAME
    path.write_text(line + "\n" + path.read_text())


def test_the_default_retention_is_24_months(tmp_path):
    assert RETENTION_MONTHS == 24
    config_path, _ = ensure(tmp_path / "var")
    assert load_config(config_path).audit_retention_months == 24


def test_a_retention_under_24_months_is_refused_at_start(tmp_path):
    var = tmp_path / "var"
    config_path, _ = ensure(var)
    _with_top_level(var, "audit_retention_months = 12")
    with pytest.raises(ConfigError) as err:
        load_config(config_path)
    assert f"{config_path}:1:" in str(err.value) and "audit_retention_months" in str(err.value)
    config_path.write_text(config_path.read_text().replace("= 12", "= 84"))  # longer is allowed
    assert load_config(config_path).audit_retention_months == 84
    for bad in (0, 23, -24, True, 24.0):
        with pytest.raises(ValueError, match="at least 24 months"):
            check_retention(bad)


@pytest.mark.parametrize(
    "now, months, cutoff",
    [
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), 24, datetime(2024, 11, 23, 12, 0, tzinfo=UTC)),
        (datetime(2026, 2, 28, tzinfo=UTC), 24, datetime(2024, 2, 28, tzinfo=UTC)),
        (datetime(2026, 8, 31, tzinfo=UTC), 30, datetime(2024, 2, 29, tzinfo=UTC)),  # leap February's last day
        (datetime(2026, 1, 15, tzinfo=UTC), 25, datetime(2023, 12, 15, tzinfo=UTC)),  # across a year
    ],
)
def test_retention_cutoff_counts_calendar_months(now, months, cutoff):
    assert retention_cutoff(now, months) == cutoff


def test_records_older_than_the_retention_are_never_pruned(tmp_path, monkeypatch):
    path = tmp_path / "audit.log"
    _written_at(monkeypatch, datetime(2023, 1, 2, tzinfo=UTC))  # 46 months before NOW
    with AuditLog.open(path) as log:
        _append(log, 3)
    _written_at(monkeypatch, NOW)
    for _ in range(3):  # the service restarts (reopens the log) and writes more
        with AuditLog.open(path) as log:
            _append(log, 1)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 6 and lines[0].startswith(b'{"seq":1,"time":"2023-01-02T')
    assert verify(path).ok and verify(path).records == 6


def _log_spanning_retention(path, monkeypatch, key=None) -> tuple[list[bytes], list[bytes]]:
    """3 records 30 months old, then 2 written now: (old lines, new lines)."""
    _written_at(monkeypatch, datetime.now(UTC).replace(year=datetime.now(UTC).year - 3))
    with AuditLog.open(path, key) as log:
        _append(log, 3)
    monkeypatch.undo()
    with AuditLog.open(path, key) as log:
        _append(log, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    return lines[:3], lines[3:]


def test_export_of_the_whole_log_verifies_on_its_own(tmp_path, monkeypatch):
    log_path, out = tmp_path / "audit.log", tmp_path / "export.jsonl"
    _log_spanning_retention(log_path, monkeypatch)
    done = CliRunner().invoke(main, ["audit", "export", str(log_path), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_bytes() == log_path.read_bytes()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert CliRunner().invoke(main, ["audit", "verify", str(out)]).exit_code == 0
    again = CliRunner().invoke(main, ["audit", "export", str(log_path), "--out", str(out)])
    assert again.exit_code == 2 and "cannot create" in again.output  # an export is never overwritten


def test_export_past_retention_gives_only_what_may_be_archived(tmp_path, monkeypatch):
    var = tmp_path / "var"
    ensure(var)
    keyring = LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True)
    old, new = _log_spanning_retention(var / "audit.log", monkeypatch, keyring.audit_key())
    keyring.close()
    done = CliRunner().invoke(main, ["audit", "export", "--var", str(var), "--past-retention"])
    assert done.exit_code == 0, done.output
    assert done.stdout_bytes == b"".join(old)
    since = CliRunner().invoke(
        main, ["audit", "export", "--var", str(var), "--since", datetime.now(UTC).strftime("%Y-%m-%d")]
    )
    assert since.stdout_bytes == b"".join(new)
    assert (var / "audit.log").read_bytes() == b"".join(old + new)  # exporting removes nothing


def test_export_of_a_broken_log_writes_nothing(tmp_path, monkeypatch):
    log_path, out = tmp_path / "audit.log", tmp_path / "export.jsonl"
    old, new = _log_spanning_retention(log_path, monkeypatch)
    log_path.write_bytes(b"".join(old[:1] + old[2:] + new))  # a record removed
    done = CliRunner().invoke(main, ["audit", "export", str(log_path), "--out", str(out)])
    assert done.exit_code == 1 and "line 2" in done.output and "nothing exported" in done.output
    assert not out.exists()
