"""The Runtime: every command's resources built from the config, observed, and closed in reverse order."""

import pytest

from keys import AuditLog, KeyFile, LocalKeyring
from replicator.cli.erase import run_erase
from replicator.cli.reconcile import run_reconcile
from replicator.config import load_config
from replicator.embedded import CONFIG_NAME, ensure
from replicator.observe.metrics import Metrics
from replicator.reconcile.job import Options
from replicator.runtime import Runtime


@pytest.fixture
def config(tmp_path):
    var = tmp_path / "var"
    ensure(var)
    AuditLog.open(var / "audit.log").close()
    LocalKeyring.open(var / "keyring.json", KeyFile(var / "kek.key"), create=True).close()
    return load_config(var / CONFIG_NAME)


class _Closing:
    """A region that records its close, then closes the driver."""

    def __init__(self, inner, closed: list[str]):
        self.inner, self.name, self._closed = inner, inner.name, closed

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    async def close(self) -> None:
        self._closed.append(self.name)
        await self.inner.close()


def region_calls(metrics: Metrics) -> set[tuple[str, str]]:
    """(region, op) of every region call the metrics counted."""
    return {
        (s.labels["region"], s.labels["op"])
        for family in metrics.registry.collect()
        if family.name == "replicator_region_op_seconds"
        for s in family.samples
        if s.name.endswith("_count") and s.value > 0
    }


async def test_what_was_opened_is_closed_in_reverse_order_when_a_later_resource_fails(config, monkeypatch):
    closed: list[str] = []
    keys = config.keys.model_copy(update={"key_file": None, "passphrase_env": "REPLICATOR_TEST_UNSET_PASSPHRASE"})
    config = config.model_copy(update={"keys": keys})
    monkeypatch.delenv("REPLICATOR_TEST_UNSET_PASSPHRASE", raising=False)
    with pytest.raises(ValueError, match="REPLICATOR_TEST_UNSET_PASSPHRASE"):
        async with Runtime(config, wrap_region=lambda r: _Closing(r, closed)) as runtime:
            assert list(runtime.regions) == ["ca", "jp"]  # read preference first
            await runtime.keys()  # the passphrase variable is unset: fails after the regions opened
    assert closed == ["jp", "ca"]


async def test_each_resource_is_built_once(config):
    async with Runtime(config) as runtime:
        assert runtime.region("ca") is runtime.regions["ca"]
        assert runtime.journal is runtime.journal
        assert await runtime.keys() is await runtime.keys()
        assert await runtime.audit() is await runtime.audit()


async def test_reconcile_and_erase_region_calls_appear_in_the_metrics(config, tmp_path):
    metrics = Metrics()
    code = await run_reconcile(config, Options(), report_path=tmp_path / "report.json", metrics=metrics)
    assert code == 0, (tmp_path / "report.json").read_text()
    assert {("ca", "list"), ("jp", "list")} <= region_calls(metrics)

    metrics = Metrics()
    receipt, code = await run_erase(config, "ada", wait=30, metrics=metrics)
    assert code == 0 and receipt["state"] == "done"
    assert {("ca", "list"), ("jp", "list")} <= region_calls(metrics)
