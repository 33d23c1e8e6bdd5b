"""The journal's reconcile lease and checkpoint (every journal: the ``journal`` fixture)."""


async def test_one_owner_at_a_time_and_a_dead_owner_expires(journal, clock):
    assert await journal.acquire_lease("p1", "w1", 60)
    assert not await journal.acquire_lease("p1", "w2", 60)
    assert await journal.acquire_lease("p2", "w2", 60)  # another partition
    assert await journal.acquire_lease("p1", "w1", 60)  # the holder again: extended
    clock.t += 59
    assert not await journal.acquire_lease("p1", "w2", 60)
    clock.t += 2  # w1 died without releasing
    assert await journal.acquire_lease("p1", "w2", 60)
    assert not await journal.renew_lease("p1", "w1", 60)  # w1 lost it
    assert await journal.renew_lease("p1", "w2", 60)


async def test_renewing_keeps_the_lease(journal, clock):
    assert await journal.acquire_lease("p", "w1", 30)
    for _ in range(5):
        clock.t += 20
        assert await journal.renew_lease("p", "w1", 30)
        assert not await journal.acquire_lease("p", "w2", 30)


async def test_release_frees_only_the_owners_lease(journal):
    assert await journal.acquire_lease("p", "w1", 60)
    await journal.release_lease("p", "w2")
    assert not await journal.acquire_lease("p", "w2", 60)
    await journal.release_lease("p", "w1")
    assert await journal.acquire_lease("p", "w2", 60)


async def test_checkpoint_round_trip_survives_reopening(journal, reopen):
    assert await journal.load_checkpoint("k") is None
    await journal.save_checkpoint("k", "v1/a")
    await journal.save_checkpoint("k", "v1/b")
    await journal.save_checkpoint("other", "v1/z")
    again = reopen()
    try:
        assert await again.load_checkpoint("k") == "v1/b"
    finally:
        await again.close()
    await journal.clear_checkpoint("k")
    assert await journal.load_checkpoint("k") is None
    assert await journal.load_checkpoint("other") == "v1/z"
