"""Window assignment, session merging, firing and lateness (streamline.runtime.windows).

The property tests at the end run whole event streams through the assigners
and ``AggregateSpec`` the way a partition task does, and compare with a
brute-force recomputation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.watermark import NO_WATERMARK, WatermarkTracker
from streamline.runtime.windows import (
    HoppingWindows,
    Session,
    SessionWindows,
    TumblingWindows,
    Window,
    is_late,
    unfired,
    window_fires,
)

MINUTE = 60_000

# --- tumbling -------------------------------------------------------------------------


def test_tumbling_window_contains_its_start() -> None:
    assert TumblingWindows(MINUTE).assign(MINUTE) == [Window(MINUTE, 2 * MINUTE)]


def test_tumbling_record_exactly_at_end_belongs_to_next_window() -> None:
    windows = TumblingWindows(MINUTE)
    assert windows.assign(MINUTE - 1) == [Window(0, MINUTE)]
    assert windows.assign(MINUTE) == [Window(MINUTE, 2 * MINUTE)]


def test_tumbling_negative_timestamps_floor_towards_minus_infinity() -> None:
    windows = TumblingWindows(MINUTE)
    assert windows.assign(-1) == [Window(-MINUTE, 0)]
    assert windows.assign(-MINUTE) == [Window(-MINUTE, 0)]
    assert windows.assign(-MINUTE - 1) == [Window(-2 * MINUTE, -MINUTE)]


def test_window_bounds_are_named() -> None:
    window = TumblingWindows(10).window_of(15)
    assert (window.start, window.end) == (10, 20)


@pytest.mark.parametrize("size", [0, -5])
def test_tumbling_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="size must be > 0"):
        TumblingWindows(size)


@given(st.integers(1, 10**6), st.integers(-(10**13), 10**13))
@settings(max_examples=200, deadline=None)
def test_tumbling_assigns_the_one_aligned_window_containing_t(size: int, t: int) -> None:
    [window] = TumblingWindows(size).assign(t)
    assert window.start <= t < window.end
    assert window.end - window.start == size
    assert window.start % size == 0


# --- hopping --------------------------------------------------------------------------


def test_hopping_record_is_in_size_over_advance_windows() -> None:
    windows = HoppingWindows(MINUTE, 10_000).assign(65_000)
    assert windows == [Window(s, s + MINUTE) for s in range(10_000, 70_000, 10_000)]


def test_hopping_record_at_window_end_is_not_in_that_window() -> None:
    windows = HoppingWindows(20, 10).assign(20)
    assert windows == [Window(10, 30), Window(20, 40)]


def test_hopping_negative_timestamps_are_epoch_aligned() -> None:
    assert HoppingWindows(20, 10).assign(-5) == [Window(-20, 0), Window(-10, 10)]
    assert HoppingWindows(20, 10).assign(-10) == [Window(-20, 0), Window(-10, 10)]


def test_hopping_with_advance_equal_to_size_is_tumbling() -> None:
    assert HoppingWindows(10, 10).assign(25) == TumblingWindows(10).assign(25)


def test_hopping_with_advance_over_size_leaves_gaps_in_no_window() -> None:
    windows = HoppingWindows(10, 30)
    assert windows.assign(5) == [Window(0, 10)]
    assert windows.assign(15) == []
    assert not windows.is_late(15, 0, watermark=10**9)


def test_hopping_advance_must_be_positive() -> None:
    with pytest.raises(ValueError, match="advance must be > 0"):
        HoppingWindows(10, 0)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(-(10**4), 10**4))
@settings(max_examples=200, deadline=None)
def test_hopping_assigns_exactly_the_windows_containing_t(size: int, advance: int, t: int) -> None:
    lo = (t - size) // advance - 2
    hi = t // advance + 2
    expected = [
        Window(k * advance, k * advance + size)
        for k in range(lo, hi + 1)
        if k * advance <= t < k * advance + size
    ]
    assert HoppingWindows(size, advance).assign(t) == expected
    if size % advance == 0:
        assert len(expected) == size // advance


# --- sessions -------------------------------------------------------------------------

GAP = 10


def test_first_record_starts_a_session() -> None:
    merge = SessionWindows(GAP).merge([], 100)
    assert merge.joined == ()
    assert merge.session == Session(100, 100)


def test_record_exactly_at_last_plus_gap_joins() -> None:
    merge = SessionWindows(GAP).merge([(100, 120)], 130)
    assert merge.joined == (Session(100, 120),)
    assert merge.session == Session(100, 130)


def test_record_at_last_plus_gap_plus_one_starts_a_new_session() -> None:
    merge = SessionWindows(GAP).merge([(100, 120)], 131)
    assert merge.joined == ()
    assert merge.session == Session(131, 131)


def test_record_exactly_at_first_minus_gap_extends_session_backwards() -> None:
    merge = SessionWindows(GAP).merge([(100, 120)], 90)
    assert merge.session == Session(90, 120)
    assert SessionWindows(GAP).merge([(100, 120)], 89).joined == ()


def test_record_inside_a_session_leaves_its_bounds() -> None:
    merge = SessionWindows(GAP).merge([(100, 120)], 110)
    assert merge.session == Session(100, 120)


def test_record_between_two_sessions_merges_them() -> None:
    sessions = [(135, 150), (100, 120)]
    merge = SessionWindows(GAP).merge(sessions, 128)
    assert merge.joined == (Session(100, 120), Session(135, 150))
    assert merge.session == Session(100, 150)


def test_record_bridging_needs_to_be_within_gap_of_both() -> None:
    merge = SessionWindows(GAP).merge([(100, 120), (140, 150)], 129)
    assert merge.joined == (Session(100, 120),)
    assert merge.session == Session(100, 129)


def test_session_window_is_first_to_last_plus_gap() -> None:
    assert SessionWindows(GAP).window(Session(100, 120)) == Window(100, 130)


def test_session_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="gap must be > 0"):
        SessionWindows(0)


# --- firing and lateness --------------------------------------------------------------


def test_window_fires_exactly_at_end_plus_allowed_lateness() -> None:
    assert not window_fires(60_000, 10_000, watermark=69_999)
    assert window_fires(60_000, 10_000, watermark=70_000)


def test_nothing_fires_before_there_is_a_watermark() -> None:
    assert not window_fires(-(10**15), 0, watermark=NO_WATERMARK)


def test_session_fires_at_last_plus_gap_plus_lateness() -> None:
    sessions = SessionWindows(GAP)
    assert not sessions.fires(Session(100, 120), 5, watermark=134)
    assert sessions.fires(Session(100, 120), 5, watermark=135)


def test_tumbling_record_is_late_once_its_window_has_fired() -> None:
    windows = TumblingWindows(MINUTE)
    assert not windows.is_late(30_000, 10_000, watermark=69_999)
    assert windows.is_late(30_000, 10_000, watermark=70_000)
    assert is_late(windows.assign(30_000), 10_000, watermark=70_000)


def test_hopping_record_is_not_late_while_any_of_its_windows_is_open() -> None:
    windows = HoppingWindows(20, 10)
    assigned = windows.assign(15)  # [0, 20) and [10, 30)
    assert not is_late(assigned, 0, watermark=20)
    assert unfired(assigned, 0, watermark=20) == [Window(10, 30)]
    assert not windows.is_late(15, 0, watermark=29)
    assert windows.is_late(15, 0, watermark=30)
    assert is_late(assigned, 0, watermark=30)


def test_record_in_no_window_is_not_late() -> None:
    assert not is_late([], 0, watermark=10**9)


def test_session_record_is_late_when_its_minimal_session_has_fired() -> None:
    sessions = SessionWindows(GAP)
    assert not sessions.is_late(100, 5, watermark=114)
    assert sessions.is_late(100, 5, watermark=115)


def test_session_record_joining_an_emitted_session_is_late() -> None:
    # (0, 0) fired at watermark 10; a record at 5 would join it, although its
    # own minimal session [5, 15) has not fired.
    sessions = SessionWindows(GAP)
    assert not sessions.is_late(5, 0, watermark=10)
    assert sessions.is_late(5, 0, watermark=10, fired_last=0)
    assert sessions.is_late(10, 0, watermark=10, fired_last=0)
    assert not sessions.is_late(11, 0, watermark=10, fired_last=0)


def test_fired_last_expires_once_the_minimal_session_rule_covers_it() -> None:
    sessions = SessionWindows(GAP)
    assert not sessions.fired_last_expired(100, 5, watermark=124)
    assert sessions.fired_last_expired(100, 5, watermark=125)


# --- streams against a brute-force oracle ---------------------------------------------

SPEC = AggregateSpec(
    {
        "n": "count()",
        "total": "sum(v)",
        "lo": "min(v)",
        "hi": "max(v)",
        "mean": "avg(v)",
        "first_name": "first(name)",
        "last_name": "last(name)",
        "lo_name": "min(name)",
    }
)


@dataclass(frozen=True)
class Rec:
    """One input record: arrival position ``seq``, event time, key and value."""

    seq: int
    t: int
    key: str
    value: dict[str, Any]


NAMES = (None, "", "a", "b", "ab", "ba")


@st.composite
def streams(draw: st.DrawFn) -> list[Rec]:
    """Event streams with disorder, duplicate times, nulls, ints or floats.

    Each record is drawn as (time, code), the code picking key, number and name
    from small pools: two draws per record keep generation fast.
    """
    number = st.integers(-1000, 1000) if draw(st.booleans()) else st.floats(-1e6, 1e6)
    numbers = (None, *draw(st.lists(number, min_size=1, max_size=6)))
    choices = 3 * len(numbers) * len(NAMES)
    items = draw(
        st.lists(st.tuples(st.integers(-60, 60), st.integers(0, choices - 1)), max_size=30)
    )
    stream = []
    for seq, (t, code) in enumerate(items):
        key = "xyz"[code % 3]
        code //= 3
        value = {"v": numbers[code % len(numbers)], "name": NAMES[code // len(numbers)]}
        stream.append(Rec(seq, t, key, value))
    return stream


def fold(records: Sequence[Rec]) -> list[Any]:
    acc = SPEC.init()
    for r in records:
        acc = SPEC.add(acc, r.value, r.t, r.seq)
    return acc


def expected_result(records: Sequence[Rec]) -> dict[str, Any]:
    """The window's result computed directly from its records."""
    numbers = [r.value["v"] for r in records if r.value["v"] is not None]
    named = sorted((r.t, r.seq, r.value["name"]) for r in records if r.value["name"] is not None)
    return {
        "n": len(records),
        "total": sum(numbers) if numbers else None,
        "lo": min(numbers, default=None),
        "hi": max(numbers, default=None),
        "mean": sum(numbers) / len(numbers) if numbers else None,
        "first_name": named[0][2] if named else None,
        "last_name": named[-1][2] if named else None,
        "lo_name": min((n for _, _, n in named), default=None),
    }


def assert_result(actual: dict[str, Any], records: Sequence[Rec]) -> None:
    """Exact, except sums of floats: within 1e-9 of the sum of magnitudes."""
    expected = expected_result(records)
    assert actual.keys() == expected.keys()
    scale = sum(abs(r.value["v"]) for r in records if r.value["v"] is not None)
    for field, want in expected.items():
        got = actual[field]
        if isinstance(want, float):
            assert isinstance(got, float), field
            assert abs(got - want) <= 1e-9 * scale, field
        else:
            assert got == want and type(got) is type(want), field


def hopping_or_tumbling() -> st.SearchStrategy[TumblingWindows | HoppingWindows]:
    return st.one_of(
        st.builds(TumblingWindows, st.integers(1, 60)),
        st.integers(1, 60).flatmap(
            lambda size: st.builds(HoppingWindows, st.just(size), st.integers(1, size + 10))
        ),
    )


@given(hopping_or_tumbling(), streams())
@settings(max_examples=200, deadline=None)
def test_fixed_windows_aggregate_like_brute_force(
    assigner: TumblingWindows | HoppingWindows, stream: list[Rec]
) -> None:
    state: dict[tuple[str, Window], list[Any]] = {}
    for r in stream:
        for window in assigner.assign(r.t):
            acc = state.get((r.key, window), SPEC.init())
            state[(r.key, window)] = SPEC.add(acc, r.value, r.t, r.seq)

    expected: dict[tuple[str, Window], list[Rec]] = defaultdict(list)
    for r in stream:
        for window in brute_force_windows(assigner, r.t):
            expected[(r.key, window)].append(r)
    assert state.keys() == expected.keys()
    for slot, records in expected.items():
        assert_result(SPEC.result(state[slot]), records)


def brute_force_windows(assigner: TumblingWindows | HoppingWindows, t: int) -> Iterator[Window]:
    size = assigner.size_ms
    advance = assigner.advance_ms if isinstance(assigner, HoppingWindows) else size
    # Streams have -60 <= t <= 60 and sizes up to 60: try every aligned start around.
    for start in range(-150 // advance * advance, 70, advance):
        if start <= t < start + size:
            yield Window(start, start + size)


def sessionize(records: Sequence[Rec], gap: int) -> list[tuple[Session, list[Rec]]]:
    """Brute force: sort by time and cut wherever two neighbours are more than gap apart."""
    out: list[tuple[Session, list[Rec]]] = []
    for r in sorted(records, key=lambda r: r.t):
        if out and r.t - out[-1][0].last <= gap:
            session, members = out[-1]
            out[-1] = (Session(session.first, r.t), [*members, r])
        else:
            out.append((Session(r.t, r.t), [r]))
    return out


@given(st.integers(1, 40), streams())
@settings(max_examples=200, deadline=None)
def test_sessions_merge_like_brute_force(gap: int, stream: list[Rec]) -> None:
    windows = SessionWindows(gap)
    state: dict[str, dict[Session, list[Any]]] = defaultdict(dict)
    for r in stream:
        sessions = state[r.key]
        merge = windows.merge(sessions, r.t)
        acc = SPEC.init()
        for joined in merge.joined:
            acc = SPEC.merge(acc, sessions.pop(joined))
        sessions[merge.session] = SPEC.add(acc, r.value, r.t, r.seq)

    for key in "xyz":
        expected = sessionize([r for r in stream if r.key == key], gap)
        assert sorted(state[key]) == [session for session, _ in expected]
        for session, records in expected:
            assert_result(SPEC.result(state[key][session]), records)


@st.composite
def lateness_settings(draw: st.DrawFn) -> tuple[int, int]:
    """(max_out_of_orderness, allowed_lateness) in ms."""
    return draw(st.integers(0, 40)), draw(st.integers(0, 40))


@given(hopping_or_tumbling(), lateness_settings(), streams())
@settings(max_examples=200, deadline=None)
def test_fixed_windows_fire_once_with_exactly_the_records_that_arrived_in_time(
    assigner: TumblingWindows | HoppingWindows, lateness: tuple[int, int], stream: list[Rec]
) -> None:
    out_of_order, allowed = lateness
    tracker = WatermarkTracker(out_of_order, 60_000)
    state: dict[tuple[str, Window], list[Any]] = {}
    emitted: dict[tuple[str, Window], dict[str, Any]] = {}
    late: set[int] = set()
    for r in stream:
        watermark = tracker.watermark
        assigned = assigner.assign(r.t)
        assert assigner.is_late(r.t, allowed, watermark) == is_late(assigned, allowed, watermark)
        if is_late(assigned, allowed, watermark):
            late.add(r.seq)
            continue
        for window in unfired(assigned, allowed, watermark):
            acc = state.get((r.key, window), SPEC.init())
            state[(r.key, window)] = SPEC.add(acc, r.value, r.t, r.seq)
        watermark = tracker.observe(r.t, wall_ms=r.seq)
        for slot in [s for s in state if window_fires(s[1].end, allowed, watermark)]:
            assert slot not in emitted
            emitted[slot] = SPEC.result(state.pop(slot))
    for slot, acc in state.items():  # end of input: flush
        assert slot not in emitted
        emitted[slot] = SPEC.result(acc)

    # Oracle: a record counts in a window iff the watermark before it had not
    # reached that window's end + allowed lateness.
    expected: dict[tuple[str, Window], list[Rec]] = defaultdict(list)
    expected_late: set[int] = set()
    for r in stream:
        before = max((p.t for p in stream[: r.seq]), default=None)
        watermark = NO_WATERMARK if before is None else before - out_of_order
        windows = list(brute_force_windows(assigner, r.t))
        open_windows = [w for w in windows if watermark < w.end + allowed]
        if windows and not open_windows:
            expected_late.add(r.seq)
        for window in open_windows:
            expected[(r.key, window)].append(r)
    assert late == expected_late
    assert emitted.keys() == expected.keys()
    for slot, records in expected.items():
        assert_result(emitted[slot], records)


@given(st.integers(1, 40), lateness_settings(), streams())
@settings(max_examples=200, deadline=None)
def test_sessions_with_lateness_emit_each_session_once_and_never_overlap(
    gap: int, lateness: tuple[int, int], stream: list[Rec]
) -> None:
    out_of_order, allowed = lateness
    windows = SessionWindows(gap)
    tracker = WatermarkTracker(out_of_order, 60_000)
    open_sessions: dict[str, dict[Session, list[Any]]] = defaultdict(dict)
    fired_last: dict[str, int] = {}
    emitted: dict[str, list[tuple[Session, dict[str, Any], int]]] = defaultdict(list)
    accepted: list[Rec] = []
    for r in stream:
        watermark = tracker.watermark
        if windows.is_late(r.t, allowed, watermark, fired_last.get(r.key)):
            # Justified: its minimal session fired, or it is within gap of an emitted one.
            assert r.t + gap + allowed <= watermark or any(
                r.t <= s.last + gap for s, _, _ in emitted[r.key]
            )
            continue
        accepted.append(r)
        sessions = open_sessions[r.key]
        merge = windows.merge(sessions, r.t)
        acc = SPEC.init()
        for joined in merge.joined:
            acc = SPEC.merge(acc, sessions.pop(joined))
        sessions[merge.session] = SPEC.add(acc, r.value, r.t, r.seq)
        assert not windows.fires(merge.session, allowed, watermark)

        watermark = tracker.observe(r.t, wall_ms=r.seq)
        for key, sessions in open_sessions.items():
            for session in sorted(s for s in sessions if windows.fires(s, allowed, watermark)):
                emitted[key].append((session, SPEC.result(sessions.pop(session)), r.seq))
                fired_last[key] = max(fired_last.get(key, session.last), session.last)
        for key in [
            k
            for k, last in fired_last.items()
            if windows.fired_last_expired(last, allowed, watermark)
        ]:
            del fired_last[key]
    for key, sessions in open_sessions.items():  # end of input: flush
        for session in sorted(sessions):
            emitted[key].append((session, SPEC.result(sessions[session]), len(stream)))

    # What was emitted is exactly the sessions of the records that were not late.
    for key in "xyz":
        expected = sessionize([r for r in accepted if r.key == key], gap)
        got = sorted(emitted[key], key=lambda e: e[0])
        assert [s for s, _, _ in got] == [s for s, _ in expected]
        for (_, result, _), (_, records) in zip(got, expected, strict=True):
            assert_result(result, records)
