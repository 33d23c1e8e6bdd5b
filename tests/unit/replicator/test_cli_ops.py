"""The operator commands as an operator runs them, on the embedded default (two local regions):
``replicator health``, ``audit verify``, ``keys rotate`` and ``erase``."""

import asyncio
import json
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from keys import AuditLog, KeyFile, LocalKeyring, Passphrase, WrongPassphrase
from keys.audit import verify
from replicator.cli import main
from replicator.config import load_config
from replicator.embedded import CONFIG_NAME, ensure
from replicator.http.app import build_app
from replicator.http.handlers import SERVICE
from replicator.journal.sqlite import SqliteJournal

PASSPHRASE = "correct horse battery staple"


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture
def var(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    keyring = LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True)  # as serve does
    AuditLog.open(var / "audit.log", keyring.audit_key()).close()
    keyring.close()
    return var


def with_config(var, extra: str) -> None:
    path = var / CONFIG_NAME
    path.write_text(path.read_text() + "\n" + extra)


def statuses(output: str) -> dict[str, str]:
    return {c["component"]: c["status"] for c in json.loads(output)["checks"]}


# -- health ---------------------------------------------------------------------------------


def test_health_on_the_embedded_default_is_ok(var):
    result = cli("health", "--var", str(var), "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert report["status"] == "OK"
    assert [c["component"] for c in report["checks"]] == [
        "region:ca",
        "region:jp",
        "keyring",
        "audit",
        "journal",
        "erasure-ledger",
    ]
    table = cli("health", "--var", str(var))
    assert table.exit_code == 0
    assert "replicator health: OK" in table.output
    for row in ("region:ca", "region:jp", "keyring", "audit", "journal"):
        assert row in table.output
    assert "\x1b[" not in table.output  # colour only on a terminal


def test_health_is_crit_when_a_region_is_unusable(var):
    (var / "regions").mkdir()
    (var / "regions" / "jp").write_text("not a directory")
    result = cli("health", "--var", str(var), "--json")
    assert result.exit_code == 2
    checks = statuses(result.output)
    assert checks["region:jp"] == "CRIT" and checks["region:ca"] == "OK"
    one = cli("health", "--var", str(var), "--json", "--region", "ca")
    assert one.exit_code == 0 and "region:jp" not in one.output
    unknown = cli("health", "--var", str(var), "--region", "eu")
    assert unknown.exit_code == 2 and "no region eu (have ca, jp)" in unknown.output


def test_health_backlog_threshold_from_the_config_and_the_flag(var):
    async def add_rows():
        journal = SqliteJournal(var / "journal.sqlite3")
        for i in range(3):
            await journal.add("copy", f"v1/n{i}", src="ca", dst="jp")
        await journal.close()

    asyncio.run(add_rows())
    with_config(var, "[health]\nbacklog_warn = 2\n")
    result = cli("health", "--var", str(var), "--json")
    assert result.exit_code == 1, result.output
    journal = next(c for c in json.loads(result.output)["checks"] if c["component"] == "journal")
    assert journal["status"] == "WARN" and journal["figures"]["pending"] == 3
    assert cli("health", "--var", str(var), "--json", "--backlog-warn", "3").exit_code == 0


def test_health_config_thresholds_are_validated(var):
    with_config(var, "[health]\nprobe_timeout = -1\n")
    result = cli("health", "--var", str(var))
    assert result.exit_code == 2 and "probe_timeout" in result.output
    assert f"{CONFIG_NAME}:" in result.output  # names the file (and line)


def test_health_does_not_create_a_missing_keyring(var):
    (var / "keyring.json").unlink()
    result = cli("health", "--var", str(var), "--json")
    assert result.exit_code == 2 and statuses(result.output)["keyring"] == "CRIT"
    assert "keyring.json does not exist" in result.output and not (var / "keyring.json").exists()


def test_health_is_crit_for_a_wrong_key_file_and_an_unopenable_journal(var):
    (var / "kek.key").write_bytes(os.urandom(32))  # not the KEK the keyring was made with
    (var / "journal.sqlite3").mkdir()
    result = cli("health", "--var", str(var), "--json")
    assert result.exit_code == 2
    checks = {c["component"]: c for c in json.loads(result.output)["checks"]}
    assert checks["keyring"]["status"] == "CRIT" and "WrongPassphrase" in checks["keyring"]["detail"]
    assert checks["journal"]["status"] == "CRIT"
    assert checks["audit"]["status"] == "OK"  # verified in full without the journal's checkpoint


# -- audit verify -------------------------------------------------------------------------------


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as audit:
        for action in ("read", "write", "read", "delete"):
            audit.append(principal="p", action=action, outcome="allowed")
    return path


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_audit_verify_an_intact_log(log):
    result = cli("audit", "verify", str(log))
    assert result.exit_code == 0 and result.output == f"{log}: OK, 4 records (unkeyed), chain intact\n"


def test_audit_verify_names_a_removed_line(log):
    ls = lines(log)
    log.write_bytes(ls[0] + ls[2] + ls[3])
    result = cli("audit", "verify", str(log))
    assert result.exit_code == 1
    assert f"{log}: BROKEN at line 2: expected seq 2, found 3 (record deleted, moved or inserted)" in result.output
    assert "lines 1-1 verify (1 records)" in result.output


def test_audit_verify_names_an_edited_line(log):
    ls = lines(log)
    log.write_bytes(ls[0] + ls[1] + ls[2].replace(b'"read"', b'"list"') + ls[3])
    result = cli("audit", "verify", str(log))
    assert result.exit_code == 1
    assert "BROKEN at line 3: record hash does not match its contents (record edited)" in result.output


def test_audit_verify_names_reordered_lines(log):
    ls = lines(log)
    log.write_bytes(ls[0] + ls[2] + ls[1] + ls[3])
    result = cli("audit", "verify", str(log))
    assert result.exit_code == 1 and "BROKEN at line 2: expected seq 2, found 3" in result.output


def test_audit_verify_names_an_inserted_line(log):
    ls = lines(log)
    log.write_bytes(ls[0] + ls[1] + ls[1] + ls[2] + ls[3])
    result = cli("audit", "verify", str(log))
    assert result.exit_code == 1 and "BROKEN at line 3: expected seq 3, found 2" in result.output


def _keyed_log(var, n: int) -> None:
    keyring = LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"))
    with AuditLog.open(var / "audit.log", keyring.audit_key()) as audit:
        for _ in range(n):
            audit.append(principal="p", action="read", outcome="allowed")
    keyring.close()


def test_audit_verify_defaults_to_the_configs_log(var):
    _keyed_log(var, 1)
    result = cli("audit", "verify", "--var", str(var))
    assert result.exit_code == 0 and "OK, 1 records" in result.output
    (var / "audit.log").write_bytes(b"not a record\n")
    assert cli("audit", "verify", "--var", str(var)).exit_code == 1


def test_audit_verify_checks_the_macs_under_the_key_provider_s_audit_key(var):
    _keyed_log(var, 3)
    result = cli("audit", "verify", "--var", str(var))
    assert result.exit_code == 0 and "OK, 3 records (3 keyed under ak_" in result.output, result.output
    bare = cli("audit", "verify", str(var / "audit.log"))  # no config, no key: links only, not enough
    assert bare.exit_code == 2 and "3 keyed records need the audit key" in bare.output


def test_audit_verify_names_the_first_record_re_chained_with_a_guessed_key(var):
    from keys.audit import AuditKey, encode

    _keyed_log(var, 4)
    log = var / "audit.log"
    records = [json.loads(line) for line in lines(log)]
    records[1]["principal"] = "someone-else"
    out, prev = [], records[0]["mac"]
    guess = AuditKey.derive(b"\x00" * 32)
    for record in records[1:]:  # the file re-chained from the edit on, as an attacker with a guess would
        record.pop("mac")
        record["prev"] = prev
        line, prev = encode(record, guess)
        out.append(line)
    log.write_bytes(lines(log)[0] + b"".join(out))
    result = cli("audit", "verify", "--var", str(var))
    assert result.exit_code == 1 and "BROKEN at line 2: record mac does not match" in result.output, result.output


def test_audit_verify_refuses_a_log_rewritten_in_the_unkeyed_format(var, log):
    (var / "audit.log").write_bytes(log.read_bytes())  # a whole, valid, unkeyed chain where a keyed one was
    result = cli("audit", "verify", "--var", str(var))
    assert result.exit_code == 1 and "BROKEN at line 1: no keyed record" in result.output, result.output


def test_a_replaced_audit_log_is_crit_until_its_checkpoint_is_saved_again(var, tmp_path):
    _keyed_log(var, 3)
    assert cli("health", "--var", str(var), "--json").exit_code == 0  # saves the checkpoint (record 3)
    (var / "audit.log").unlink()
    _keyed_log(var, 1)  # a new log: the old checkpoint is not in it
    result = cli("health", "--var", str(var), "--json")
    audit = next(c for c in json.loads(result.output)["checks"] if c["component"] == "audit")
    assert result.exit_code == 2 and audit["status"] == "CRIT", audit
    assert "run `replicator audit verify` for the whole file" in audit["detail"]
    assert cli("audit", "verify", str(var / "audit.log"), "--save-checkpoint").exit_code == 2  # config only
    saved = cli("audit", "verify", "--var", str(var), "--save-checkpoint")
    assert saved.exit_code == 0 and "now verifies from record 1" in saved.output
    assert cli("health", "--var", str(var), "--json").exit_code == 0


# -- keys rotate ----------------------------------------------------------------------------------


def keyring_with_customers(var, n: int) -> dict[str, bytes]:
    """``n`` customers with a data key, one of them erased; their keys by DEK id."""
    keyring = LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True)
    keys = {}
    for i in range(n):
        dek = keyring.get_or_create_dek(f"cust-{i}")
        keys[dek.dek_id] = dek.key
    keyring.destroy("cust-erased")
    keyring.close()
    return keys


def test_keys_rotate_to_a_new_key_file(var, tmp_path):
    keys = keyring_with_customers(var, 3)
    new = tmp_path / "kek-2.key"
    result = cli("keys", "rotate", "--var", str(var), "--new-key-file", str(new), "--generate")
    assert result.exit_code == 0, result.output
    assert "[1/4] unlocking" in result.output and "[3/4] rewrapping them under KEK version 2" in result.output
    assert "KEK version 1 (keyfile) -> 2 (keyfile)" in result.output
    assert "rewrapped: 3 data keys and the index key; 1 erased customers (no key) untouched" in result.output
    assert f'next: point [keys] at the new KEK: key_file = "{new}"' in result.output
    assert "next: then run `replicator keys rotate --finish`" in result.output
    assert oct(new.stat().st_mode & 0o777) == "0o600"
    for kek in (new, var / "kek.key"):  # the same data keys (objects stay readable), under either KEK until --finish
        with LocalKeyring.open(var / "keyring.json", KeyFile(kek)) as keyring:
            assert {d: keyring.get_dek(d) for d in keys} == keys


def test_keys_rotate_to_a_passphrase_never_shows_it(var, monkeypatch):
    keyring_with_customers(var, 2)
    monkeypatch.setenv("NEW_KEK_PASSPHRASE", PASSPHRASE)
    result = cli("keys", "rotate", "--var", str(var), "--new-passphrase-env", "NEW_KEK_PASSPHRASE", "--json")
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["new_version"] == 2 and report["new_kind"] == "passphrase"
    assert report["data_keys_rewrapped"] == 2 and report["versions_dropped"] == []
    assert report["previous_still_opens"] is True
    assert any('passphrase_env = "NEW_KEK_PASSPHRASE"' in step for step in report["next"])
    LocalKeyring.open(var / "keyring.json", Passphrase(PASSPHRASE)).check()


@pytest.mark.parametrize(
    "args, env, message",
    [
        ([], {}, "--new-passphrase-env VAR, --new-key-file PATH or --new-barbican-secret URL (one of them)"),
        (
            ["--new-barbican-cloud", "kek"],
            {},
            "--new-barbican-cloud and --new-clouds-yaml go with --new-barbican-secret",
        ),
        (["--new-barbican-secret", "http://db.example/v1/secrets/x"], {}, "--new-barbican-secret: a Barbican secret"),
        (
            [
                "--new-barbican-secret",
                "https://kms.example/v1/secrets/7c2e2c0b-1f7e-4c0a-9a39-8b9a2e7c2f10",
                "--generate",
            ],
            {},
            "--generate makes a key file; it does not go with --new-barbican-secret",
        ),
        (["--new-passphrase-env", "UNSET_VAR_FOR_TEST"], {}, "UNSET_VAR_FOR_TEST (the new passphrase) is not set"),
        (["--new-passphrase-env", "SHORT"], {"SHORT": "hunter2"}, "SHORT: passphrase must be"),
        (["--new-key-file", "{tmp}/missing.key"], {}, "does not exist (add --generate to make one)"),
        (["--new-key-file", "{var}/kek.key", "--generate"], {}, "already exists"),
        (["--new-key-file", "{var}/kek.key"], {}, "is the current key file"),
    ],
)
def test_keys_rotate_refuses_clearly_and_changes_nothing(var, tmp_path, monkeypatch, args, env, message):
    keyring_with_customers(var, 1)
    before = (var / "keyring.json").read_bytes()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = [a.format(tmp=tmp_path, var=var) for a in args]
    result = cli("keys", "rotate", "--var", str(var), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "nothing was rotated" in result.output and "hunter2" not in result.output
    assert (var / "keyring.json").read_bytes() == before


def point_config_at(var, new_key_file) -> None:
    """What the operator does after a rotation: the config's key file now holds the new KEK."""
    os.replace(new_key_file, var / "kek.key")


def test_keys_rotate_finish_retires_the_previous_kek(var, tmp_path):
    keys = keyring_with_customers(var, 2)
    old = (var / "kek.key").read_bytes()
    new = tmp_path / "kek-2.key"
    assert cli("keys", "rotate", "--var", str(var), "--new-key-file", str(new), "--generate").exit_code == 0
    # The config still names the previous KEK: --finish would lock out whatever restarts on it.
    result = cli("keys", "rotate", "--var", str(var), "--finish")
    assert result.exit_code == 2 and "opens the keyring with KEK version 1, the one --finish retires" in result.output
    assert "nothing was finished" in result.output
    assert json.loads((var / "keyring.json").read_text())["kek"]["link"]["from"] == 1
    # A second rotation before finishing is refused, file untouched.
    before = (var / "keyring.json").read_bytes()
    result = cli("keys", "rotate", "--var", str(var), "--new-key-file", str(tmp_path / "kek-3.key"), "--generate")
    assert result.exit_code == 2 and "rotation to KEK version 2 is not finished" in result.output
    assert "replicator keys rotate --finish" in result.output and (var / "keyring.json").read_bytes() == before
    assert not (tmp_path / "kek-3.key").exists()  # refused before --generate made a key file
    assert cli("keys", "rotate", "--var", str(var), "--finish", "--new-key-file", str(new)).exit_code == 2

    point_config_at(var, new)
    result = cli("keys", "rotate", "--var", str(var), "--finish")
    assert result.exit_code == 0, result.output
    assert "[2/3] removing the link from KEK version 1 to 2" in result.output
    assert "KEK version 1 retired; only version 2 (keyfile) opens it now" in result.output
    state = json.loads((var / "keyring.json").read_text())
    assert list(state["kek"]["versions"]) == ["2"] and "link" not in state["kek"]
    (tmp_path / "old.key").write_bytes(old)
    (tmp_path / "old.key").chmod(0o600)
    with pytest.raises(WrongPassphrase, match="wrong key file"):  # the old KEK opens nothing now
        LocalKeyring.open(var / "keyring.json", KeyFile(tmp_path / "old.key"))
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key")) as keyring:
        assert {d: keyring.get_dek(d) for d in keys} == keys
    again = cli("keys", "rotate", "--var", str(var), "--finish", "--json")
    assert again.exit_code == 0 and json.loads(again.output[again.output.index("{") :])["version_retired"] is None
    # Finished: the next rotation goes ahead.
    result = cli("keys", "rotate", "--var", str(var), "--new-key-file", str(tmp_path / "kek-3.key"), "--generate")
    assert result.exit_code == 0 and "KEK version 2 (keyfile) -> 3 (keyfile)" in result.output


async def test_the_service_keeps_serving_through_a_rotation_without_a_restart(var, tmp_path):
    """The service runs with KEK 1 while ``keys rotate`` rewraps its keyring to KEK 2, then ``--finish``."""
    token = (var / "dev-token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    read = {**auth, "X-Purpose": "service"}
    app = build_app(load_config(var / CONFIG_NAME), workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        assert (await client.put("/v1/objects/cust-old/account/doc", data=b"before", headers=auth)).status == 201
        new = tmp_path / "kek-2.key"
        result = await asyncio.to_thread(
            cli, "keys", "rotate", "--var", str(var), "--new-key-file", str(new), "--generate"
        )
        assert result.exit_code == 0, result.output
        keys = app[SERVICE].keys
        keys._cache.clear()  # so the read below must unwrap from the rotated file
        resp = await client.get("/v1/objects/cust-old/account/doc", headers=read)
        assert resp.status == 200 and await resp.read() == b"before"
        resp = await client.put("/v1/objects/cust-new/account/doc", data=b"after", headers=auth)
        assert resp.status == 201, await resp.text()
        resp = await client.get("/v1/objects/cust-new/account/doc", headers=read)
        assert resp.status == 200 and await resp.read() == b"after"
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
        state = json.loads((var / "keyring.json").read_text())
        assert {item["kek"] for item in state["deks"].values()} == {2}  # the new customer's key too
        # The operator points the config at the new KEK and finishes; the running service has
        # followed the link, so it goes on without a restart.
        point_config_at(var, new)
        assert (await asyncio.to_thread(cli, "keys", "rotate", "--var", str(var), "--finish")).exit_code == 0
        keys._cache.clear()
        for customer, body in (("cust-old", b"before"), ("cust-new", b"after")):
            resp = await client.get(f"/v1/objects/{customer}/account/doc", headers=read)
            assert resp.status == 200 and await resp.read() == body
        assert (await client.put("/v1/objects/cust-3/account/doc", data=b"x", headers=auth)).status == 201
        assert (await client.get("/readyz")).status == 200


# -- erase ------------------------------------------------------------------------------------------


async def write_objects(var, customer: str, n: int) -> None:
    config_path = var / CONFIG_NAME
    token = (var / "dev-token").read_text().strip()
    async with TestClient(TestServer(build_app(load_config(config_path), workers_idle_wait=0.05))) as client:
        for i in range(n):
            resp = await client.put(
                f"/v1/objects/{customer}/account/doc-{i}", data=b"private", headers={"Authorization": f"Bearer {token}"}
            )
            assert resp.status == 201, await resp.text()


def region_files(var) -> dict[str, int]:
    config = load_config(var / CONFIG_NAME)
    out = {}
    for name, region in config.regions.items():

        async def count(path=region.path, name=name):
            from regions.local import LocalRegion

            r = LocalRegion(path, name=name)
            n = len([i async for i in r.list("v1/")])
            await r.close()
            return n

        out[name] = asyncio.run(count())
    return out


def test_erase_asks_first_and_a_no_changes_nothing(var):
    asyncio.run(write_objects(var, "cust-7", 2))
    result = cli("erase", "cust-7", "--var", str(var), input="n\n")
    assert result.exit_code == 2 and "Erase customer 'cust-7'?" in result.output
    assert "not erased" in result.output
    assert cli("erase", "cust-7", "--var", str(var), input="").exit_code == 2  # no answer is not a yes
    assert region_files(var) == {"ca": 2, "jp": 2}
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key")) as keyring:
        assert keyring.destroyed_at("cust-7") is None


def test_erase_destroys_the_key_sweeps_both_regions_and_prints_the_receipt(var):
    asyncio.run(write_objects(var, "cust-7", 3))
    asyncio.run(write_objects(var, "cust-8", 1))
    result = cli("erase", "cust-7", "--var", str(var), input="y\n")
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.output[result.output.index("{") :])
    assert receipt["state"] == "done"
    assert receipt["regions"] == {"ca": {"deleted": 3, "remaining": 0}, "jp": {"deleted": 3, "remaining": 0}}
    assert region_files(var) == {"ca": 1, "jp": 1}  # the other customer's object stays
    with LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key")) as keyring:
        assert keyring.destroyed_at("cust-7") is not None and keyring.destroyed_at("cust-8") is None
    assert verify(var / "audit-cli.log").ok  # the commands' own chain (replicator.cli.operator_audit)
    records = [json.loads(line) for line in (var / "audit-cli.log").read_text().splitlines()]
    erase = [r for r in records if r["action"] == "erase"]
    assert len(erase) == 1 and erase[0]["principal"].startswith("cli:") and "cust-7" not in json.dumps(records)


def test_erase_refuses_a_bad_customer_id_before_touching_anything(var):
    result = cli("erase", "..", "--var", str(var), "--yes")
    assert result.exit_code == 2 and "customer must be" in result.output
