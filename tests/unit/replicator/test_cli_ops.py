"""`replicator health` and `replicator audit verify` as an operator runs them."""

import json

from click.testing import CliRunner

from keys import AuditLog
from replicator.cli import main
from replicator.embedded import ensure


def test_health_on_the_embedded_default_is_ok(tmp_path):
    ensure(tmp_path / "var")
    AuditLog.open(tmp_path / "var" / "audit.log").close()
    result = CliRunner().invoke(main, ["health", "--var", str(tmp_path / "var"), "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert report["status"] == "OK"
    assert [c["component"] for c in report["checks"]] == ["region:ca", "region:jp", "keyring", "audit", "journal"]


def test_health_is_crit_when_a_region_is_unusable(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    AuditLog.open(var / "audit.log").close()
    (var / "regions").mkdir()
    (var / "regions" / "jp").write_text("not a directory")
    result = CliRunner().invoke(main, ["health", "--var", str(var), "--json"])
    assert result.exit_code == 2
    checks = {c["component"]: c["status"] for c in json.loads(result.output)["checks"]}
    assert checks["region:jp"] == "CRIT" and checks["region:ca"] == "OK"
    one = CliRunner().invoke(main, ["health", "--var", str(var), "--json", "--region", "ca"])
    assert one.exit_code == 0 and "region:jp" not in one.output


def test_audit_verify_names_the_broken_line(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as log:
        for _ in range(3):
            log.append(principal="p", action="read", outcome="allowed")
    assert CliRunner().invoke(main, ["audit", "verify", str(path)]).exit_code == 0
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[1] + lines[0] + lines[2])
    result = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert result.exit_code == 1 and "BROKEN at line 1" in result.output
