"""The reconciler against the dev stack's Azurite (ca) and Keystone + Swift (jp).

1. Every kind of divergence, seeded behind the service's back → ``replicator
   reconcile --dry-run`` names each planned action → a real run fixes all →
   a second run plans nothing. Through the CLI, from a config file, as the
   nightly job runs it.
2. The property test's scenario once on the real stores: writes and deletes
   during outages of either region, then one reconcile → both hold the same
   set, each name at its newest acknowledged version.

Each test makes its own random containers and removes them. The servers are
required (``tests.support.stack.stack_env``): a missing one fails the test, naming it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time

from azure.storage.blob.aio import BlobServiceClient
from click.testing import CliRunner

from keys import KeyFile, LocalKeyring
from keys.audit import verify
from keys.tags import is_tag
from regions import RetryPolicy, Unavailable
from regions.azure import AzureRegion
from regions.swift import SwiftRegion, encode_content_type, segment_content_type
from replicator.cli import main
from replicator.embedded import config_text
from replicator.hlc import Clock, Version
from replicator.layout import ObjectMeta, version_of
from replicator.reconcile import Reconciler
from tests.support.faulty import FaultyRegion
from tests.support.seed import DAY_MS, path, put_live, put_tomb
from tests.support.stack import stack_env, stack_fixture

AZURE_VAR = "REPLICATOR_TEST_AZURE_CONNECTION_STRING"


class Stores:
    """A fresh Azurite container and Swift container, and the drivers on them."""

    def __init__(self):
        self.conn = stack_env(AZURE_VAR)
        self.clouds_yaml = stack_env("REPLICATOR_TEST_CLOUDS_YAML")
        self.cloud = stack_env("REPLICATOR_TEST_SWIFT_CLOUD")
        suffix = os.urandom(6).hex()
        self.ca_container, self.jp_container = f"rec-ca-{suffix}", f"rec-jp-{suffix}"

    async def open(self) -> tuple[AzureRegion, SwiftRegion]:
        async with BlobServiceClient.from_connection_string(self.conn) as svc:
            await svc.create_container(self.ca_container)
        retry = RetryPolicy(attempts=3, initial_wait=0.05, timeout=30)
        return (
            AzureRegion(self.ca_container, connection_string=self.conn, name="ca", retry=retry),
            SwiftRegion(self.cloud, self.jp_container, name="jp", clouds_yaml=self.clouds_yaml, retry=retry),
        )

    async def destroy(self) -> None:
        async with BlobServiceClient.from_connection_string(self.conn) as svc:
            try:
                await svc.delete_container(self.ca_container)
            except Exception:
                pass
        jp = SwiftRegion(self.cloud, self.jp_container, name="jp", clouds_yaml=self.clouds_yaml)
        try:
            names = [i.name async for i in jp.list()]
            await asyncio.gather(*(jp.delete(n) for n in names))
            for container in (jp.container, jp.segment_container):
                try:
                    (await jp._send("DELETE", container)).release()
                except Exception:
                    pass  # never created, or already gone
        finally:
            await jp.close()

    def config(self, tmp_path) -> str:
        KeyFile.generate(tmp_path / "kek.key")
        regions = f'''[regions.ca]
kind = "azure"
location = "canadacentral"
country = "CA"
container = "{self.ca_container}"
connection_string_env = "{AZURE_VAR}"

[regions.jp]
kind = "swift"
provider = "conoha"
location = "tyo1"
country = "JP"
cloud = "{self.cloud}"
clouds_yaml = "{self.clouds_yaml}"
container = "{self.jp_container}"

'''
        text = config_text("it", regions, sections="[reconcile]\ntombstone_grace_days = 7\n\n")
        (tmp_path / "replicator.toml").write_text(text)
        return str(tmp_path / "replicator.toml")


async def listing(region) -> dict[str, tuple]:
    return {i.name: (i.meta.get("version"), i.digest, i.meta.get("tomb") == "1") async for i in region.list("v1/")}


async def read(region, name) -> bytes:
    _, stream = await region.get(name)
    return b"".join([c async for c in stream])


async def corrupt_azure(stores: Stores, name: str) -> None:
    """Rewrite the blob with other bytes and a digest that matches neither them nor the good copy."""
    async with BlobServiceClient.from_connection_string(stores.conn) as svc:
        blob = svc.get_blob_client(stores.ca_container, name)
        props = await blob.get_blob_properties()
        meta = dict(props.metadata)
        meta["x_sha256"] = hashlib.sha256(b"a digest of nothing stored").hexdigest()
        await blob.upload_blob(b"rewritten behind our back", overwrite=True, metadata=meta)


async def corrupt_swift(jp: SwiftRegion, name: str) -> None:
    info = await jp.head(name)
    fake = hashlib.sha256(b"another digest of nothing stored").hexdigest()
    resp = await jp._send(
        "PUT",
        jp.container,
        name,
        data=b"rewritten behind our back",
        headers={"Content-Type": encode_content_type(fake, info.meta)},
    )
    resp.release()


@stack_fixture
def stores() -> Stores:
    """This module's :class:`Stores` (fresh container names, the drivers on them), not conftest's."""
    return Stores()


def reconcile(config: str, *args) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["reconcile", "--config", config, *args])
    assert result.exit_code in (0, 1, 2), result.output
    return result.exit_code, json.loads(result.stdout)


def test_every_divergence_is_planned_fixed_and_then_quiet(tmp_path, stores):
    config = stores.config(tmp_path)
    now = time.time_ns() // 1_000_000
    with LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key"), create=True) as keyring:
        live_dek = keyring.get_or_create_dek("kept").dek_id
        erased_dek = keyring.get_or_create_dek("erased").dek_id
        keyring.destroy("erased")

    def v(ago_ms: int) -> Version:
        return Version(now - ago_ms, 0, "n1")

    n = {
        k: path("kept", k)
        for k in (
            "only_ca",
            "only_jp",
            "stale_ca",
            "stale_jp",
            "corrupt_ca",
            "corrupt_jp",
            "tomb_over_live",
            "lone_tomb",
            "old_tombs",
            "same",
        )
    }
    n["expired"] = path("kept", "old-visit", "visit")
    n["fresh_visit"] = path("kept", "new-visit", "visit")
    n["erased_a"], n["erased_b"] = path("erased", "a"), path("erased", "b")
    expected_plan = {
        ("copy", n["only_ca"], "ca", "jp"),
        ("copy", n["only_jp"], "jp", "ca"),
        ("copy", n["stale_ca"], "jp", "ca"),
        ("copy", n["stale_jp"], "ca", "jp"),
        ("repair", n["corrupt_ca"], None, None),
        ("repair", n["corrupt_jp"], None, None),
        ("delete", n["tomb_over_live"], "ca", "jp"),
        ("copy_tombstone", n["lone_tomb"], "jp", "ca"),
        ("purge", n["old_tombs"], None, "ca"),
        ("purge", n["old_tombs"], None, "jp"),
        ("expire", n["expired"], None, "ca"),
        ("expire", n["expired"], None, "jp"),
        ("shred", n["erased_a"], None, "ca"),
        ("shred", n["erased_a"], None, "jp"),
        ("shred", n["erased_b"], None, "jp"),
    }

    async def seed():
        ca, jp = await stores.open()
        try:
            both = (ca, jp)
            kw = {"dek": live_dek}
            bodies = {"only_ca": await put_live(ca, n["only_ca"], v(1000), **kw)}
            await put_live(jp, n["only_jp"], v(1000), **kw)
            await put_live(ca, n["stale_ca"], v(2000), **kw)
            await put_live(jp, n["stale_ca"], v(1000), **kw)
            await put_live(jp, n["stale_jp"], v(2000), **kw)
            await put_live(ca, n["stale_jp"], v(1000), **kw)
            for key in ("corrupt_ca", "corrupt_jp", "same"):
                bodies[key] = os.urandom(3000)
                for r in both:
                    await put_live(r, n[key], v(1000), body=bodies[key], **kw)
            await corrupt_azure(stores, n["corrupt_ca"])
            await corrupt_swift(jp, n["corrupt_jp"])
            await put_live(jp, n["tomb_over_live"], v(3000), **kw)
            await put_tomb(ca, n["tomb_over_live"], v(1000))
            await put_tomb(jp, n["lone_tomb"], v(1000))
            same = os.urandom(100)  # a replica in both regions has the same bytes
            for r in both:
                await put_tomb(r, n["old_tombs"], v(31 * DAY_MS))  # past the grace and account's 30-day keep
                await put_live(r, n["expired"], v(91 * DAY_MS), body=same, data_class="visit", **kw)
                await put_live(r, n["fresh_visit"], v(89 * DAY_MS), body=same, data_class="visit", **kw)
                await put_live(r, n["erased_a"], v(5000), body=same, dek=erased_dek)
            await put_live(jp, n["erased_b"], v(5000), dek=erased_dek)
            # A segment of an upload still under way: the run's sweep must leave it alone.
            await jp._ensure(jp.segment_container)
            (
                await jp._send(
                    "PUT",
                    jp.segment_container,
                    f"{int(time.time())}-{os.urandom(16).hex()}/00000000",
                    data=b"in flight",
                    headers={"Content-Type": segment_content_type(n["same"])},
                )
            ).release()
            return bodies
        finally:
            await ca.close()
            await jp.close()

    async def check(bodies):
        ca, jp = await _reopen(stores)
        try:
            a, b = await listing(ca), await listing(jp)
            assert a == b
            assert set(a) == {
                n[k]
                for k in (
                    "only_ca",
                    "only_jp",
                    "stale_ca",
                    "stale_jp",
                    "corrupt_ca",
                    "corrupt_jp",
                    "tomb_over_live",
                    "lone_tomb",
                    "same",
                    "fresh_visit",
                )
            }
            assert a[n["tomb_over_live"]][2] and a[n["lone_tomb"]][2]
            for key in ("corrupt_ca", "corrupt_jp", "only_ca", "same"):
                assert await read(ca, n[key]) == bodies[key] == await read(jp, n[key]), key
        finally:
            await ca.close()
            await jp.close()

    try:
        bodies = asyncio.run(seed())
        code, dry = reconcile(config, "--dry-run")
        assert code == 0, dry
        planned = {(x["action"], x["name"], x.get("from"), x.get("to") or x.get("region")) for x in dry["actions"]}
        assert planned == expected_plan and dry["segments"] == {}
        code, report = reconcile(config, "--concurrency", "4")
        assert code == 0 and report["error_count"] == 0, report["errors"]
        assert report["segments"] == {
            "jp": {"uploads": 0, "segments": 0, "bytes": 0, "kept": 0, "young": 1, "failed": 0, "unattributed": 0}
        }
        assert sum(c["done"] for c in report["counts"].values()) == len(expected_plan)
        asyncio.run(check(bodies))
        code, again = reconcile(config)
        assert code == 0 and again["counts"] == {} and again["names"] == 10
        check_kept(tmp_path, [dry, report, again], expected_plan)
    finally:
        asyncio.run(stores.destroy())


def check_kept(tmp_path, reports: list[dict], expected_plan: set) -> None:
    """Every run kept its report (one file each, none overwritten); every object removed from a region is
    an audit record in the reconcile's own chain, tags only, and each real run names its kept report."""
    kept = {p.name: json.loads(p.read_text()) for p in (tmp_path / "reconcile-reports").iterdir()}
    assert kept == {f"reconcile-{r['report_id']}.json": r for r in reports}
    logs = [tmp_path / f"audit-reconcile-{r['report_id']}.log" for r in reports[1:]]  # one chain per real run
    assert sorted(tmp_path.glob("audit-reconcile*.log")) == sorted(logs)
    found = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    removed = sorted(
        (r["action"].removeprefix("reconcile."), f"v1/{r['customer_tag']}/{r['class']}/{r['name_tag']}", r["outcome"])
        for r in found
        if r["action"] != "reconcile.run"
    )
    deleting = {"delete", "expire", "purge", "shred"}
    assert removed == sorted((k, name, f"removed:{to}") for k, name, _, to in expected_plan if k in deleting)
    assert [r["outcome"] for r in found if r["action"] == "reconcile.run"] == [
        f"exit-0:report-{r['report_id']}"
        for r in reports[1:]  # the dry run removed nothing: no chain
    ]
    assert all(is_tag(r["customer_tag"]) for r in found if r["action"] != "reconcile.run")  # never a customer id
    with LocalKeyring.open(tmp_path / "keyring.json", KeyFile(tmp_path / "kek.key")) as keyring:
        assert all(verify(log, key=keyring.audit_key(), require_keyed=True).ok for log in logs)


async def _reopen(stores: Stores):
    retry = RetryPolicy(attempts=3, initial_wait=0.05, timeout=30)
    return (
        AzureRegion(stores.ca_container, connection_string=stores.conn, name="ca", retry=retry),
        SwiftRegion(stores.cloud, stores.jp_container, name="jp", clouds_yaml=stores.clouds_yaml, retry=retry),
    )


async def test_writes_and_deletes_during_outages_converge_after_one_reconcile(stores):
    ca, jp = await stores.open()
    faulty = {"ca": FaultyRegion(ca), "jp": FaultyRegion(jp)}
    rnd = random.Random(6)
    clock = Clock("n1")
    names = [path("p", str(i)) for i in range(6)]
    latest: dict[str, tuple[Version, bool, bytes]] = {}
    try:
        for _ in range(40):
            op = rnd.random()
            if op < 0.15:
                side = rnd.choice(["ca", "jp"])
                faulty[side].down = not faulty[side].down
                continue
            name, tomb = rnd.choice(names), op > 0.75
            version = clock.now()
            body = b"" if tomb else os.urandom(rnd.randint(1, 2000))
            meta = ObjectMeta(version, "account", version.ms, tombstone=tomb, dek_id="" if tomb else "dek_x")
            stored = False
            for region in faulty.values():
                try:
                    await region.put(name, body, meta.to_meta())
                    stored = True
                except Unavailable:
                    pass
            if stored:
                latest[name] = (version, tomb, body)
        for region in faulty.values():
            region.down = False
        report = await Reconciler(
            ca,
            jp,
            now_ms=time.time_ns() // 1_000_000,
            retention={"account": None},
            destroyed=set(),
            grace_ms=7 * DAY_MS,
            concurrency=4,
        ).run(["v1/"])
        assert report.error_count == 0, report.errors
        a, b = await listing(ca), await listing(jp)
        assert a == b and set(a) == set(latest)
        for name, (version, tomb, body) in latest.items():
            info = await ca.head(name)
            assert version_of(info) == version and (info.meta.get("tomb") == "1") == tomb
            if not tomb:
                assert await read(jp, name) == body == await read(ca, name)
    finally:
        await ca.close()
        await jp.close()
        await stores.destroy()
