"""The auditor's commands on the embedded default (two local regions): signed erasure receipts and
`erase verify-receipt`, `keys new-signing-key`, and one customer's history from several nodes' chains
(`replicator.replication.audit_history`, which `audit who-accessed` and the export use)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from click.testing import CliRunner

from keys import AuditLog, KeyFile, LocalKeyring
from keys.audit import AuditKey
from regions.local import LocalRegion
from replicator.cli import main
from replicator.config import ConfigError, load_config
from replicator.embedded import CONFIG_NAME, RECEIPT_KEY, ensure
from replicator.replication.audit_history import customer_history
from replicator.replication.audit_ship import AuditShipper, segment_name

from .test_cli_ops import write_objects

KEY = AuditKey.derive(b"\x07" * 32)
ADA, BOB = "a" * 32, "b" * 32  # two customers' tags


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture
def var(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    keyring = LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True)
    AuditLog.open(var / "audit.log", keyring.audit_key()).close()
    keyring.close()
    return var


# -- signed erasure receipts ------------------------------------------------------------------------


def test_the_erase_command_s_receipt_is_signed_and_verify_receipt_checks_it_offline(var, tmp_path):
    assert os.stat(var / RECEIPT_KEY).st_mode & 0o777 == 0o600
    asyncio.run(write_objects(var, "cust-9", 2))
    result = cli("erase", "cust-9", "--var", str(var), "--yes")
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.output[result.output.index("{") :])
    assert receipt["state"] == "done" and receipt["signature"]["alg"] == "Ed25519"
    assert "cust-9" not in json.dumps(receipt) and len(receipt["customer_tag"]) == 32
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    public = str(var / f"{RECEIPT_KEY}.pub")

    done = cli("erase", "verify-receipt", str(path), "--public-key", public)
    assert done.exit_code == 0 and f"valid: erasure {receipt['erasure']} (done" in done.output, done.output
    assert cli("erase", "verify-receipt", str(path), "--var", str(var)).exit_code == 0  # the config's key

    changed = {**receipt, "regions": {**receipt["regions"], "jp": {"deleted": 2, "remaining": 1}}}
    path.write_text(json.dumps(changed))
    done = cli("erase", "verify-receipt", str(path), "--public-key", public)
    assert done.exit_code == 1 and "INVALID: the signature does not match" in done.output

    other = tmp_path / "other.pem"
    assert cli("keys", "new-signing-key", str(other)).exit_code == 0
    path.write_text(json.dumps(receipt))
    done = cli("erase", "verify-receipt", str(path), "--public-key", f"{other}.pub")
    assert done.exit_code == 1 and "INVALID: signed by key rk_" in done.output

    signature = receipt["signature"]
    path.write_text(json.dumps({**receipt, "signature": {**signature, "value": signature["value"][:40]}}))
    done = cli("erase", "verify-receipt", str(path), "--public-key", public)
    assert done.exit_code == 1 and "truncated" in done.output

    path.write_text("{not json")
    assert cli("erase", "verify-receipt", str(path), "--public-key", public).exit_code == 2
    assert cli("erase", "verify-receipt", str(tmp_path / "missing.json"), "--public-key", public).exit_code == 2


def test_new_signing_key_never_overwrites_and_a_config_refuses_a_key_others_can_read(var, tmp_path):
    path = tmp_path / "k.pem"
    made = cli("keys", "new-signing-key", str(path))
    assert made.exit_code == 0 and "new receipt signing key rk_" in made.output
    assert os.stat(path).st_mode & 0o777 == 0o600 and (tmp_path / "k.pem.pub").read_bytes().startswith(b"-----BEGIN")
    before = path.read_bytes()
    assert cli("keys", "new-signing-key", str(path)).exit_code == 2 and path.read_bytes() == before
    os.chmod(var / RECEIPT_KEY, 0o644)
    with pytest.raises(ConfigError, match=r"replicator.toml:\d+: receipt signing key .* mode 0644"):
        load_config(var / CONFIG_NAME)


def test_without_a_signing_key_receipts_are_unsigned_and_cannot_be_checked(var, tmp_path):
    config = var / CONFIG_NAME
    config.write_text("\n".join(line for line in config.read_text().splitlines() if "erasure_receipt_key" not in line))
    asyncio.run(write_objects(var, "cust-1", 1))
    result = cli("erase", "cust-1", "--var", str(var), "--yes")
    receipt = json.loads(result.output[result.output.index("{") :])
    assert result.exit_code == 0 and "signature" not in receipt
    (tmp_path / "r.json").write_text(json.dumps(receipt))
    done = cli("erase", "verify-receipt", str(tmp_path / "r.json"), "--var", str(var))
    assert done.exit_code == 2 and "names no erasure_receipt_key" in done.output
    done = cli("erase", "verify-receipt", str(tmp_path / "r.json"), "--public-key", str(var / f"{RECEIPT_KEY}.pub"))
    assert done.exit_code == 1 and "not signed" in done.output


# -- one customer's history from several nodes' chains ----------------------------------------------


def _accesses(log: AuditLog, node: str) -> None:
    log.append(principal=f"web-{node}", action="read", outcome="allowed", customer_tag=ADA, data_class="account",
               name_tag="c" * 32, purpose="service")  # fmt: skip
    log.append(principal="batch", action="write", outcome="allowed", customer_tag=ADA, data_class="billing")
    log.append(principal="intruder", action="read", outcome="denied", customer_tag=ADA, data_class="billing",
               purpose="analytics")  # fmt: skip
    log.append(principal="web", action="read", outcome="allowed", customer_tag=BOB, data_class="account")
    log.append(principal="ops", action="keys.rotate", outcome="allowed")


async def test_history_gathers_every_node_s_records_once_and_nothing_about_another_customer(tmp_path):
    regions = {name: LocalRegion(tmp_path / name, name=name) for name in ("ca", "jp")}
    logs = {}
    for node in ("n1", "n2", "n3"):
        logs[node] = tmp_path / f"{node}.log"
        with AuditLog.open(logs[node], KEY) as log:
            _accesses(log, node)
            await AuditShipper(node, log, regions, KEY).ship_once()
    with AuditLog.open(logs["n1"], KEY) as log:  # one more record, not shipped yet: only n1's log holds it
        log.append(principal="late", action="export", outcome="allowed", customer_tag=ADA)

    history = await customer_history(regions, KEY, ADA, local=("n1", logs["n1"]))
    assert history.findings == []
    got = [(a.node, a.principal, a.action, a.data_class, a.purpose, a.outcome) for a in history.accesses]
    assert sorted(got) == sorted(
        [(n, f"web-{n}", "read", "account", "service", "allowed") for n in ("n1", "n2", "n3")]
        + [(n, "batch", "write", "billing", None, "allowed") for n in ("n1", "n2", "n3")]
        + [(n, "intruder", "read", "billing", "analytics", "denied") for n in ("n1", "n2", "n3")]
        + [("n1", "late", "export", None, None, "allowed")]
    )  # each once, though both regions and n1's log hold them; nothing of bob's, no rotation
    assert [a.time for a in history.accesses] == sorted(a.time for a in history.accesses)
    assert {a.principal for a in (await customer_history(regions, KEY, BOB)).accesses} == {"web"}

    cut = history.accesses[-1].time
    later = await customer_history(regions, KEY, ADA, local=("n1", logs["n1"]), since=_parse(cut))
    assert [a.principal for a in later.accesses] == ["late"]

    # n2's segment edited in one region: said (node, region, record) and its records from there on
    # left out of that region; the other region's good copy still gives them.
    name = segment_name("n2", 1)
    data = await _read(regions["jp"], name)
    await regions["jp"].put(name, data.replace(b'"intruder"', b'"friendly"'), {})
    history = await customer_history(regions, KEY, ADA)
    assert [str(f) for f in history.findings] == [
        "node n2, region jp at record 3: shipped segments: record mac does not match under audit key "
        f"{KEY.key_id} (record edited, or re-chained without the key)"
    ]
    assert history.broken and "friendly" not in {a.principal for a in history.accesses}
    assert ("n2", "intruder") in {(a.node, a.principal) for a in history.accesses}


async def _read(region, name: str) -> bytes:
    _, body = await region.get(name)
    return b"".join([c async for c in body])


def _parse(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)
