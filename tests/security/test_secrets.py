"""Plaintext, tokens, the passphrase and customer identifiers never reach a disk, a store or a log
(docs/privacy.md; issue 8, item 4). And the audit log: tampering is found, and a read the
log cannot record is refused.

The scan tests run ``replicator serve`` as a subprocess (its standard output
and standard error captured to files), push known markers through every path
(``drive``: small and streamed large PUT, overwrite, DELETE, HEAD, list, GET,
a 403 read, export, a refused SIN write, a 401, an erasure), and then read
every byte that the service could have left anywhere: each file under the
state directory (keyring, SQLite journal with its ``-wal``/``-shm``, audit
log, region index and data, temp files), read both while the service runs
(WAL and temp files exist) and after it stopped; the service's logs; and, for
the cloud deployment, every object of both containers with its metadata,
block list, manifest and name (``tests.support.clouds.Stores``).

Markers, names, customer ids and the content type are searched in every
encoding ``clouds.encodings`` knows (verbatim, hex, percent, base64/32 at
every alignment); tokens and the passphrase whole and as every 12-character
substring (``helpers.windows``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import stat
import tarfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keys import generate_token
from keys.audit import verify
from regions.local import LocalRegion
from replicator.config import load_config
from replicator.embedded import all_scopes, config_text, ensure
from replicator.http import handlers as api_mod
from replicator.http.app import build_app
from tests.support.clouds import encodings, regions_toml
from tests.support.eventually import eventually
from tests.support.localstore import stored_count
from tests.support.served import Served, files_under, find, which, windows
from tests.support.stack import stack_env

MiB = 1 << 20
PASSPHRASE_VAR = "REPLICATOR_TEST_KEYRING_PASSPHRASE"
LIMITED_SCOPES = ["write:account", "meta:account", "read:account:contact"]
SIN = "130 692 544"


def uid() -> str:
    """8 random characters (base32: never digits that could read as a SIN)."""
    return base64.b32encode(os.urandom(5)).decode().lower()


def marked(marker: bytes, size: int) -> bytes:
    """``size`` bytes: ``marker`` every 4 KiB, random bytes between."""
    out = bytearray()
    while len(out) < size:
        out += marker + os.urandom(4096 - len(marker))
    return bytes(out[:size])


async def chunked(data: bytes, size: int = 256 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- one pass through every path ------------------------------------------------------------------


async def drive(url: str, token: str, denied: tuple[str, str]) -> tuple[dict[str, set[bytes]], bytes]:
    """Markers through every path of the service at ``url``. Returns what must be found nowhere, and
    the export the service sent back (where the live markers must be found: the scan's control).

    ``denied`` is (token, purpose) of a read that must be refused with 403."""
    u = uid()
    alice, bob = f"alice-{u}", f"bob-{u}"
    names = {
        "small": f"contacts/Alice Example {u}.vcf",
        "big": f"hosting/alice-{u}-inventory.bin",
        "deleted": f"notes/alice-{u}-deleted.txt",
        "sin": f"notes/alice-{u}-sin-note.txt",
        "erased": f"profile/bob-{u}-profile.txt",
    }
    content_type = f"text/x-alice-private-{u}"
    small1 = f"BEGIN:VCARD\nFN:Alice Example\nEMAIL:alice.{u}@example.com\nEND:VCARD\n".encode()
    small2 = f"OVERWRITTEN-VCARD-{u} alice.new.{u}@example.com".encode()
    big_marker = f"INVENTORY-{u}|".encode()
    big = marked(big_marker, 3 * MiB + 5)
    deleted = f"DELETED-BODY-{u}".encode()
    sin_body = f"SIN-NOTE-{u}: my SIN is {SIN}".encode()
    bob_body = f"BOB-PROFILE-{u} bob.{u}@example.com".encode()
    unknown = generate_token()[0]
    auth = {"Authorization": f"Bearer {token}"}

    def at(customer, cls, name):
        return f"{url}/v1/objects/{customer}/{cls}/{name}"

    async with aiohttp.ClientSession(auto_decompress=False) as http:

        async def status(method, target, expect, **kw):
            async with http.request(method, target, **kw) as resp:
                body = await resp.read()
                assert resp.status == expect, (method, target, resp.status, body[:300])
                return resp, body

        await status(
            "PUT",
            at(alice, "account", names["small"]),
            201,
            data=small1,
            headers={**auth, "Content-Type": content_type},
        )
        await status("PUT", at(alice, "project", names["big"]), 201, data=chunked(big), headers=auth)
        await status(
            "PUT",
            at(alice, "account", names["small"]),
            201,
            data=small2,
            headers={**auth, "Content-Type": content_type},
        )
        await status("PUT", at(alice, "account", names["deleted"]), 201, data=deleted, headers=auth)
        await status("DELETE", at(alice, "account", names["deleted"]), 200, headers=auth)
        resp, _ = await status("HEAD", at(alice, "account", names["small"]), 200, headers=auth)
        assert resp.headers["X-Object-Size"] == str(len(small2))
        _, body = await status("GET", f"{url}/v1/objects/{alice}", 200, params={"class": "account"}, headers=auth)
        assert [o["name"] for o in json.loads(body)["objects"]] == [names["small"]]
        _, body = await status(
            "GET", at(alice, "account", names["small"]), 200, headers={**auth, "X-Purpose": "service"}
        )
        assert body == small2
        _, body = await status("GET", at(alice, "project", names["big"]), 200, headers={**auth, "X-Purpose": "service"})
        assert body == big
        await status(
            "GET",
            at(alice, "account", names["small"]),
            403,
            headers={"Authorization": f"Bearer {denied[0]}", "X-Purpose": denied[1]},
        )
        await status(
            "GET",
            at(alice, "account", names["small"]),
            401,
            headers={"Authorization": f"Bearer {unknown}", "X-Purpose": "service"},
        )
        _, exported = await status("GET", f"{url}/v1/customers/{alice}/export", 200, headers=auth)
        tar = tarfile.open(fileobj=io.BytesIO(exported))
        assert tar.extractfile(f"account/{names['small']}").read() == small2
        assert tar.extractfile(f"project/{names['big']}").read() == big
        await status("PUT", at(alice, "account", names["sin"]), 422, data=sin_body, headers=auth)

        await status("PUT", at(bob, "account", names["erased"]), 201, data=bob_body, headers=auth)
        _, body = await status("DELETE", f"{url}/v1/customers/{bob}", 202, headers=auth)
        erasure = json.loads(body)["erasure"]

        async def done():
            _, body = await status("GET", f"{url}/v1/erasures/{erasure}", 200, headers=auth)
            return json.loads(body)["state"] == "done"

        await eventually(done, timeout=30, what="the erasure finishing")
        await status("GET", at(bob, "account", names["erased"]), 410, headers={**auth, "X-Purpose": "service"})

    needles = {
        f"plaintext {what}": encodings(data[:48])
        for what, data in (
            ("vcard", small1),
            ("overwrite", small2),
            ("deleted", deleted),
            ("sin note", sin_body),
            ("erased", bob_body),
        )
    }
    needles["plaintext vcard email"] = encodings(f"alice.{u}@example.com")
    needles["plaintext big marker"] = encodings(big_marker)
    needles["plaintext big (random part)"] = {big[len(big_marker) : len(big_marker) + 32]}
    needles["the SIN"] = {SIN.encode(), SIN.replace(" ", "").encode()}
    needles["content type"] = encodings(content_type)
    for customer in (alice, bob):
        needles[f"customer id {customer}"] = encodings(customer)
    for what, name in names.items():
        needles[f"name ({what})"] = encodings(name)
        needles[f"name leaf ({what})"] = encodings(name.rsplit("/", 1)[1])
    needles["unknown token"] = windows(unknown)
    return needles, exported


LIVE = (
    "plaintext overwrite",
    "plaintext big marker",
    "plaintext big (random part)",
    "name (small)",
    "name (big)",
    "content type",
)


def assert_control(needles: dict[str, set[bytes]], exported: bytes) -> None:
    """The needles do find plaintext where it legitimately is: in the export the service streamed back."""
    found = which({"export": exported}, {k: needles[k] for k in LIVE})
    assert found == set(LIVE), set(LIVE) - found


def read_all(root: Path, label: str) -> dict[str, bytes]:
    out = {}
    for path in files_under(root):
        try:
            out[f"{label}/{path.relative_to(root)}"] = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            pass  # a temp file that went away while we looked
    return out


def token_places(haystacks: dict[str, bytes], token: str) -> set[str]:
    return {where.split(" in ", 1)[1] for where in find(haystacks, {"token": windows(token)})}


# -- the embedded default ---------------------------------------------------------------------------


async def test_embedded_default_leaves_no_plaintext_token_or_identifier(tmp_path):
    var = tmp_path / "var"
    served = Served(tmp_path, ["serve", "--var", str(var)]).start()  # makes the embedded default itself
    try:
        dev = (var / "dev-token").read_text().strip()
        needles, exported = await drive(served.url, dev, denied=(dev, "analytics"))
        running = read_all(var, "var (running)")
    finally:
        served.stop()
    stopped = read_all(var, "var")
    logs = {"stdout": served.stdout_path.read_bytes(), "stderr": served.stderr_path.read_bytes()}
    everything = {**running, **stopped, **logs}
    assert_control(needles, exported)

    # The scan saw what it should: the WAL while running, ciphertext in both regions, the audit records.
    assert any(k.endswith("-wal") for k in running), sorted(running)
    # Alice's small and big objects and her tombstone (Bob's were erased), Bob's erasure-ledger entry, and the
    # two versions the account class keeps: the overwritten small object and the deleted one.
    # Beside them, under audit/, this node's audit chain (shipped at start and once more when it stopped).
    for region in ("ca", "jp"):
        store = LocalRegion(var / "regions" / region, name=region)
        objects = [i async for i in store.list("v1/")] + [i async for i in store.list("erasures/")]
        shipped = [i.name async for i in store.list("audit/")]
        assert len(objects) == 6 and shipped and stored_count(var / "regions" / region) == 6 + len(shipped), shipped
    assert b'"action":"export"' in stopped["var/audit.log"]
    assert verify(var / "audit.log").ok

    # The dev token: in var/dev-token (by design, mode 0600) and nowhere else, not even standard output.
    assert token_places(everything, dev) == {"var (running)/dev-token", "var/dev-token"}
    assert stat.S_IMODE((var / "dev-token").stat().st_mode) == 0o600
    assert b"dev-token" in logs["stdout"]  # it says where the token is, instead
    assert find(everything, needles) == []


# -- Azure (Azurite) + Swift, keyring passphrase ------------------------------------------------------


def cloud_config(var: Path, stores, principals: dict[str, tuple[str, list[str]]]) -> Path:
    var.mkdir(parents=True, exist_ok=True)
    path = var / "replicator.toml"
    path.write_text(
        config_text(
            "sec",
            regions_toml(stores),
            principals,
            kek=f'passphrase_env = "{PASSPHRASE_VAR}"',
            sections="[limits]\nrequest_timeout = 5.0\nretry_attempts = 2\n\n",
        )
    )
    return path


async def test_clouds_hold_no_plaintext_token_passphrase_or_identifier(tmp_path, stores):
    passphrase = "keyring-pass-" + secrets.token_urlsafe(24)
    token, token_hash = generate_token()
    limited, limited_hash = generate_token()
    var = tmp_path / "var"
    config = cloud_config(var, stores, {"all": (token_hash, all_scopes()), "limited": (limited_hash, LIMITED_SCOPES)})
    served = Served(tmp_path, ["serve", "--config", str(config)], env={PASSPHRASE_VAR: passphrase}).start()
    try:
        needles, exported = await drive(served.url, token, denied=(limited, "service"))
        running = read_all(var, "var (running)")
    finally:
        served.stop()
    stopped = read_all(var, "var")
    logs = {"stdout": served.stdout_path.read_bytes(), "stderr": served.stderr_path.read_bytes()}
    objects = await stores.azure_objects() + await stores.swift_objects()
    clouds = {f"{o.store}:{o.container}/{o.name}": o.haystack() for o in objects}
    assert_control(needles, exported)

    # The scan saw the stored ciphertext: Alice's two live objects and her tombstone, the two versions account
    # keeps (the overwritten and the deleted object), in both stores, and Bob's erasure-ledger entry (by tag only).
    assert len(await stores.azure_names("v1/")) == len(await stores.swift_names(prefix="v1/")) == 5
    assert len(await stores.azure_names("erasures/")) == len(await stores.swift_names(prefix="erasures/")) == 1
    assert len(await stores.swift_names(stores.segments)) >= 4  # the 3 MiB object in 1 MiB segments
    assert "var/keyring.json" in stopped and "var/audit.log" in stopped

    needles["keyring passphrase"] = windows(passphrase)
    for what, t in (("token (all)", token), ("token (limited)", limited)):
        needles[what] = windows(t)
    secrets_of_the_stack = {  # the stores' own credentials stay in the environment and clouds.yaml
        "Azure account key": encodings(
            re.search(r"AccountKey=([^;]+)", stack_env("REPLICATOR_TEST_AZURE_CONNECTION_STRING"))[1]
        ),
        "Swift password": encodings(re.search(r"password:\s*(\S+)", Path(stores.clouds_yaml).read_text())[1]),
    }
    assert find({**running, **stopped, **logs, **clouds}, needles) == []
    assert find({**running, **stopped, **logs}, secrets_of_the_stack) == []


# -- the audit log -------------------------------------------------------------------------------------------


@pytest.fixture
async def local(tmp_path):
    """An in-process service on the embedded default (two local regions); ``.token``, ``.audit_path``,
    ``.audit_key`` (its key provider's)."""
    config_path, token = ensure(tmp_path / "var")
    config = load_config(config_path)
    app = build_app(config, workers_idle_wait=0.05)
    async with TestClient(TestServer(app)) as client:
        client.auth = {"Authorization": f"Bearer {token}"}
        client.app_ = app
        client.audit_path = Path(config.audit_log)
        client.audit_key = app[api_mod.SERVICE].keys.audit_key()
        yield client


async def _read(client, path, purpose="service"):
    return await client.get(f"/v1/objects/{path}", headers={**client.auth, "X-Purpose": purpose})


GUESSED_KEY = b"\x00" * 32  # what a forger who knows the format but not the key can do


def _line(fields: dict) -> tuple[bytes, str]:
    """A record line for ``fields`` (no link) and its MAC, made as keys/audit.py makes them but under a
    guessed key."""
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    digest = hmac.new(GUESSED_KEY, body, hashlib.sha256).hexdigest()
    return body[:-1] + b',"mac":"' + digest.encode() + b'"}\n', digest


def _fields(line: bytes) -> dict:
    record = json.loads(line)
    record.pop("mac")
    return record


async def test_audit_log_tampering_is_found_by_verify(local, tmp_path):
    for i in range(2):
        assert (await local.put(f"/v1/objects/aud-1/account/n{i}", data=b"x%d" % i, headers=local.auth)).status == 201
    for path, purpose, status in (
        ("aud-1/account/n0", "service", 200),
        ("aud-1/account/n1", "contact", 200),
        ("aud-1/account/n0", "analytics", 403),
        ("aud-1/account/n1", "service", 200),
    ):
        assert (await _read(local, path, purpose)).status == status
    assert (await local.get("/v1/customers/aud-1/export", headers=local.auth)).status == 200
    good = local.audit_path.read_bytes()
    lines = good.splitlines(keepends=True)
    assert len(lines) == 7  # two writes, three reads and a denied one, an export
    key = local.audit_key
    original = verify(local.audit_path, key=key, require_keyed=True)
    assert original.ok and original.records == 7 and original.keyed == 7

    def check(what: str, tampered: list[bytes], first_bad: int | None, **kw):
        path = tmp_path / f"tampered-{what.replace(' ', '-')}.log"
        path.write_bytes(b"".join(tampered))
        result = verify(path, key=key, **kw)
        assert not result.ok, f"{what}: not found ({result})"
        if first_bad is not None:
            assert result.first_bad_line == first_bad, (what, result)

    # The two writes come first; r is the first read's line (0-based), r + 2 the denied read.
    r = 2
    check("removed line", lines[: r + 2] + lines[r + 3 :], r + 3)
    check("removed first line", lines[1:], 1)
    edited = lines[r + 1].replace(b'"outcome":"allowed"', b'"outcome":"denied"')
    check("edited line", lines[: r + 1] + [edited] + lines[r + 2 :], r + 2)
    other = lines[r + 2].replace(b'"principal":"dev"', b'"principal":"ops"')
    check("edited principal", lines[: r + 2] + [other] + lines[r + 3 :], r + 3)
    rehashed, _ = _line(_fields(lines[r + 2].replace(b'"outcome":"denied"', b'"outcome":"allowed"')))
    check("edited and re-chained with a guessed key", lines[: r + 2] + [rehashed] + lines[r + 3 :], r + 3)
    check("reordered", lines[:r] + [lines[r], lines[r + 2], lines[r + 1]] + lines[r + 3 :], r + 2)
    check("inserted copy", lines[: r + 2] + [lines[r + 1]] + lines[r + 2 :], r + 3)
    # Cutting records off the end leaves a chain that is valid by itself: an anchor kept elsewhere
    # (the last checkpoint) is what finds it. Re-chaining the whole file needs the key.
    (tmp_path / "cut.log").write_bytes(b"".join(lines[:-1]))
    assert verify(tmp_path / "cut.log", key=key).ok
    check("cut off the end", lines[:-1], None, anchor=original.head)
    prev, rechained = "0" * 64, []
    for line in lines[:4] + lines[5:]:  # the denied read taken out, every later record renumbered
        record = _fields(line)
        record["seq"], record["prev"] = len(rechained) + 1, prev
        fixed, prev = _line(record)
        rechained.append(fixed)
    (tmp_path / "rechained.log").write_bytes(b"".join(rechained))
    assert verify(tmp_path / "rechained.log").ok  # its links are whole: only the key tells
    check("whole file re-chained with a guessed key", rechained, 1)


def _dev_full(path: Path) -> str:
    """Make ``path`` a file every write to fails with ENOSPC: a private /dev/full node (root), or a symlink."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))  # our own inode: its flock is ours alone
        return "a full-device node"
    except (PermissionError, OSError):
        path.symlink_to("/dev/full")
        return "a symlink to /dev/full"


async def test_read_is_refused_when_the_audit_log_cannot_be_written(tmp_path):
    """End to end: a service whose audit log is a full device refuses writes and decrypts (503)."""
    var = tmp_path / "var"
    ensure(var)
    secret = b"plaintext-that-must-not-leave-" + uid().encode()
    served = Served(tmp_path, ["serve", "--var", str(var)]).start()  # first, with a working log: one object
    try:
        auth = {"Authorization": f"Bearer {(var / 'dev-token').read_text().strip()}"}
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{served.url}/v1/objects/aud-2/account/profile", data=secret, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
    finally:
        served.stop()
    (var / "audit.log").unlink()
    how = _dev_full(var / "audit.log")
    served = Served(tmp_path, ["serve", "--var", str(var)]).start()
    try:
        token = (var / "dev-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            obj = f"{served.url}/v1/objects/aud-2/account/profile"
            async with http.put(obj, data=b"another", headers=auth) as resp:
                assert resp.status == 503, await resp.text()  # writes are audited too: refused
            async with http.head(obj, headers=auth) as resp:
                assert resp.status == 200  # metadata, no decrypt
            for _ in range(2):  # and stays refused
                async with http.get(obj, headers={**auth, "X-Purpose": "service"}) as resp:
                    body = await resp.read()
                    assert resp.status == 503, (how, resp.status, body[:200])
                    assert json.loads(body)["error"] == "unavailable" and secret not in body
            async with http.get(f"{served.url}/v1/customers/aud-2/export", headers=auth) as resp:
                body = await resp.read()
                assert resp.status == 503 and secret not in body
            async with http.get(f"{served.url}/readyz") as resp:
                checks = (await resp.json())["checks"]
                assert resp.status == 503 and checks["audit"] != "ok", checks
    finally:
        served.stop()


async def test_read_is_refused_when_the_disk_fills_under_the_audit_log(local):
    """In process, mid-run: the audit log's open file starts failing writes (ENOSPC), as on a full disk."""
    assert (await local.put("/v1/objects/aud-3/account/a", data=b"secret-a", headers=local.auth)).status == 201
    assert (await _read(local, "aud-3/account/a")).status == 200
    audit = local.app_[api_mod.SERVICE].audit
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, audit._fd)  # the same descriptor now writes to a full device
    finally:
        os.close(full)
    resp = await _read(local, "aud-3/account/a")
    assert resp.status == 503 and b"secret-a" not in await resp.read()
    resp = await _read(local, "aud-3/account/a")
    assert resp.status == 503  # an audit log that failed once refuses until it is reopened
    assert (await local.get("/readyz")).status == 503


async def test_read_is_refused_when_the_audit_log_file_is_replaced(local):
    assert (await local.put("/v1/objects/aud-4/account/a", data=b"secret-a", headers=local.auth)).status == 201
    path = local.audit_path
    path.unlink()
    path.mkdir()  # the log's name is now a directory: nothing can be appended under that name
    try:
        resp = await _read(local, "aud-4/account/a")
        assert resp.status == 503, f"read served ({resp.status}) while the audit log file was gone"
    finally:
        shutil.rmtree(path)
