"""The commands run beside the service leave audit records in their own chain: an erasure (while the
service holds its own log), a key rotation and its finish; ``audit verify`` checks that chain too."""

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from keys import AuditLog, KeyFile, LocalKeyring
from replicator.cli import main
from replicator.config import load_config
from replicator.embedded import CONFIG_NAME, ensure
from replicator.http.app import build_app
from replicator.paths.erasure import counts_outcomes


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def prepared(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True) as keyring:
        AuditLog.open(var / "audit.log", keyring.audit_key()).close()
    return var


def test_a_cli_erasure_while_the_service_runs_is_recorded_and_verify_passes(tmp_path):
    var = prepared(tmp_path)
    token = (var / "dev-token").read_text().strip()
    config = load_config(var / CONFIG_NAME)

    async def run() -> None:
        async with TestClient(TestServer(build_app(config, workers_idle_wait=0.05))) as client:
            for i in range(2):
                resp = await client.put(
                    f"/v1/objects/cust-9/account/doc-{i}", data=b"x", headers={"Authorization": f"Bearer {token}"}
                )
                assert resp.status == 201
            # The service holds audit.log; the command must record elsewhere, not go without.
            result = await asyncio.to_thread(cli, "erase", "cust-9", "--var", str(var), "--yes")
            assert result.exit_code == 0, result.output
            assert "without its audit line" not in result.output

    asyncio.run(run())
    found = records(var / "audit-cli.log")
    erase = [r for r in found if r["action"] == "erase"]
    swept = [r for r in found if r["action"] == "erase.swept"]
    assert len(erase) == 1 and erase[0]["principal"].startswith("cli:")
    assert [r["outcome"] for r in swept] == ["deleted:ca-2:jp-2"] and swept[0]["customer_tag"] == erase[0][
        "customer_tag"
    ]
    assert "cust-9" not in (var / "audit-cli.log").read_text()
    verified = cli("audit", "verify", "--var", str(var))
    assert verified.exit_code == 0, verified.output
    assert "audit-cli.log: OK" in verified.output
    assert "node dev-cli: every region holds records 1-2" in verified.output  # shipped by the command itself


def test_a_broken_commands_chain_fails_verify(tmp_path):
    var = prepared(tmp_path)
    assert cli("erase", "cust-1", "--var", str(var), "--yes").exit_code == 0
    lines = (var / "audit-cli.log").read_bytes().splitlines(keepends=True)
    (var / "audit-cli.log").write_bytes(b"".join(lines[1:]))  # the first record removed
    result = cli("audit", "verify", "--var", str(var), "--local-only")
    assert result.exit_code == 1 and "audit-cli.log: BROKEN at line 1" in result.output


def test_a_rotation_and_its_finish_leave_a_record_each(tmp_path):
    var = prepared(tmp_path)
    new = tmp_path / "kek-2.key"
    result = cli("keys", "rotate", "--var", str(var), "--new-key-file", str(new), "--generate")
    assert result.exit_code == 0, result.output
    path = var / CONFIG_NAME
    path.write_text(path.read_text().replace(str(var / "kek.key"), str(new)).replace('"kek.key"', f'"{new}"'))
    finished = cli("keys", "rotate", "--var", str(var), "--finish")
    assert finished.exit_code == 0, finished.output
    found = [r for r in records(var / "audit-cli.log") if r["action"].startswith("keys.")]
    assert [(r["action"], r["outcome"]) for r in found] == [
        ("keys.rotate", "kek-v1-to-v2"),
        ("keys.rotate-finish", "kek-v1-retired"),
    ]
    assert all(r["principal"].startswith("cli:") for r in found)
    assert new.read_bytes().hex() not in (var / "audit-cli.log").read_text()
    assert cli("audit", "verify", "--var", str(var)).exit_code == 0


def test_counts_per_region_fit_an_outcome():
    assert counts_outcomes("deleted", {"ca": 3, "jp": 0}) == ["deleted:ca-3:jp-0"]
    long = {f"region{i:09d}": 10**12 for i in range(3)}
    assert all(len(o) <= 64 for o in counts_outcomes("deleted", long))
    assert len(counts_outcomes("deleted", long)) == 3


def test_a_record_that_cannot_be_written_is_said_not_raised(tmp_path, monkeypatch):
    import replicator.cli.operator_audit as operator_audit

    var = prepared(tmp_path)
    config = load_config(var / CONFIG_NAME)
    monkeypatch.setattr(operator_audit, "OPEN_WAIT", 0.2)
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key")) as keyring:
        holder = AuditLog.open(var / "audit-cli.log", keyring.audit_key())  # another command's turn, too long
    try:
        said = asyncio.run(
            operator_audit.record(config, principal="cli:op", action="keys.rotate", outcome="kek-v1-to-v2")
        )
    finally:
        holder.close()
    assert said.startswith("not written: AuditBusy")
    assert (
        asyncio.run(operator_audit.record(config, principal="cli:op", action="keys.rotate", outcome="kek-v1-to-v2"))
        == "ok"
    )
    assert [r["action"] for r in records(var / "audit-cli.log")] == ["keys.rotate"]
