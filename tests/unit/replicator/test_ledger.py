"""replicator.paths.ledger: the erasure ledger in both regions, re-applied to restored key records."""

from __future__ import annotations

import pytest

from keys.keyring import LocalKeyring
from keys.provider import KeyDestroyed, Passphrase, ScryptParams
from regions.local import LocalRegion
from replicator.paths.ledger import LEDGER_PREFIX, ErasureLedger, Event, LedgerUnavailable, parse
from tests.support.faulty import FaultyRegion

PASS = Passphrase("correct horse battery staple", ScryptParams.fast())


@pytest.fixture
async def regions(tmp_path):
    made = {name: FaultyRegion(LocalRegion(tmp_path / name, name=name)) for name in ("ca", "jp")}
    yield made
    for region in made.values():
        await region.close()


@pytest.fixture
def keyring(tmp_path):
    with LocalKeyring.create(tmp_path / "keyring.json", PASS) as ring:
        yield ring


async def _names(region):
    return [info.name async for info in region.list(LEDGER_PREFIX)]


def test_names_hold_the_tag_the_time_and_the_key_id_only():
    tag = "a" * 32
    erased = Event(1_760_000_000_123, True, "dek_" + "b" * 26)
    assert erased.name(tag) == f"erasures/{tag}/0001760000000123.erased.dek_{'b' * 26}"
    assert parse(erased.name(tag)) == (tag, erased)
    never_had_a_key = Event(5, True, None)
    assert parse(never_had_a_key.name(tag)) == (tag, never_had_a_key)
    reinstated = Event(6, False)
    assert parse(reinstated.name(tag)) == (tag, reinstated)
    for other in ("v1/x", f"erasures/{tag}/12.erased.none", f"erasures/{tag.upper()}/0000000000000001.reinstated"):
        assert parse(other) is None


async def test_an_erasure_is_written_to_both_regions(regions, keyring):
    dek_id, _ = keyring.get_or_create_dek("alice")
    keyring.destroy("alice")
    tag = keyring.tagger().customer_tag("alice")
    assert await ErasureLedger(regions, keyring).record(tag, keyring.tombstone(tag)) == []
    for region in regions.values():
        [name] = await _names(region)
        assert name.startswith(f"erasures/{tag}/") and name.endswith(dek_id) and "alice" not in name


async def test_a_region_that_is_down_is_named_and_the_other_still_takes_it(regions, keyring):
    keyring.destroy("alice")
    tag = keyring.tagger().customer_tag("alice")
    regions["jp"].down = True
    assert await ErasureLedger(regions, keyring).record(tag, keyring.tombstone(tag)) == ["jp"]
    regions["jp"].down = False
    assert len(await _names(regions["ca"])) == 1 and await _names(regions["jp"]) == []


async def test_reapply_destroys_what_a_restored_keyring_brought_back(tmp_path, regions, keyring):
    dek_id, key = keyring.get_or_create_dek("alice")
    bob = keyring.get_or_create_dek("bob")
    backup = (tmp_path / "keyring.json").read_bytes()
    keyring.destroy("alice")
    tag = keyring.tagger().customer_tag("alice")
    ledger = ErasureLedger(regions, keyring)
    await ledger.record(tag, keyring.tombstone(tag))
    (tmp_path / "keyring.json").write_bytes(backup)  # the operator restores last week's copy
    restored = LocalKeyring.open(tmp_path / "keyring.json", PASS)
    assert restored.get_dek(dek_id) == key
    regions["ca"].down = True  # one region's ledger is enough
    done = await ErasureLedger(regions, restored).reapply()
    assert (done.entries, done.customers, done.redestroyed, done.unread) == (1, 1, [tag], ["ca"])
    with pytest.raises(KeyDestroyed):
        restored.get_dek(dek_id)
    with pytest.raises(KeyDestroyed):
        restored.get_or_create_dek("alice")
    assert restored.get_dek(bob.dek_id) == bob.key
    regions["ca"].down = False
    assert (await ErasureLedger(regions, restored).reapply()).redestroyed == []  # nothing left to do


async def test_no_readable_region_is_an_error_not_a_clean_bill(regions, keyring):
    for region in regions.values():
        region.down = True
    with pytest.raises(LedgerUnavailable, match="ca, jp"):
        await ErasureLedger(regions, keyring).reapply()
