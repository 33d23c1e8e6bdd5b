from hypothesis import given
from hypothesis import strategies as st

from replicator.hlc import Clock, Version


def test_stamps_increase_even_when_the_wall_clock_steps_back():
    walls = iter([1000, 1000, 999, 5, 1001, 1001])
    clock = Clock("n1", wall_ms=lambda: next(walls))
    stamps = [clock.now() for _ in range(6)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert [str(s) for s in stamps][:3] == [
        "0000000000001000.00000.n1",
        "0000000000001000.00001.n1",
        "0000000000001000.00002.n1",
    ]


def test_observe_moves_the_clock_past_a_remote_stamp():
    clock = Clock("a", wall_ms=lambda: 10)
    clock.observe(Version(500, 7, "b"))
    assert clock.now() > Version(500, 7, "b")


def test_counter_overflow_borrows_the_next_millisecond():
    clock = Clock("a", wall_ms=lambda: 10)
    clock.observe(Version(10, 99_999, "a"))
    assert clock.now() == Version(11, 0, "a")


@given(
    st.lists(
        st.tuples(st.integers(0, 10**15), st.integers(0, 99_999), st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True)),
        min_size=2,
    )
)
def test_text_form_sorts_like_the_stamp(parts):
    stamps = [Version(*p) for p in parts]
    assert sorted(stamps) == sorted(stamps, key=str)
    assert all(Version.parse(str(s)) == s for s in stamps)
