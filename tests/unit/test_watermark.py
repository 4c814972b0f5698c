"""Watermarks per partition and combined over partitions (streamline.runtime.watermark)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.runtime.watermark import (
    NO_WATERMARK,
    CombinedWatermark,
    WatermarkTracker,
    combine_watermarks,
)

OOO = 5_000
IDLE = 30_000


def test_no_watermark_before_any_record() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    assert tracker.watermark == NO_WATERMARK
    assert tracker.max_event_time_ms == NO_WATERMARK


def test_watermark_is_max_event_time_minus_out_of_orderness() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    assert tracker.observe(100_000, wall_ms=0) == 95_000
    assert tracker.observe(107_000, wall_ms=1) == 102_000
    assert tracker.max_event_time_ms == 107_000


def test_out_of_order_record_does_not_lower_the_watermark() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    tracker.observe(100_000, wall_ms=0)
    assert tracker.observe(90_000, wall_ms=1) == 95_000
    assert tracker.max_event_time_ms == 100_000


def test_zero_out_of_orderness_gives_max_event_time() -> None:
    tracker = WatermarkTracker(0, IDLE)
    assert tracker.observe(42, wall_ms=0) == 42


@given(
    st.lists(
        st.integers(min_value=-(10**12), max_value=10**12),
        min_size=1,
        max_size=50,
    )
)
@settings(max_examples=200, deadline=None)
def test_watermark_never_decreases_and_trails_max_seen(times: list[int]) -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    previous = NO_WATERMARK
    for wall, t in enumerate(times):
        wm = tracker.observe(t, wall)
        assert wm >= previous
        assert wm == max(times[: wall + 1]) - OOO
        previous = wm


def test_advance_sets_an_external_watermark_monotonically() -> None:
    tracker = WatermarkTracker(0, IDLE)
    assert tracker.advance(1_000, wall_ms=0) == 1_000
    assert tracker.advance(500, wall_ms=1) == 1_000
    assert tracker.advance(2_000, wall_ms=2) == 2_000


def test_negative_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_out_of_orderness"):
        WatermarkTracker(-1, IDLE)
    with pytest.raises(ValueError, match="idle_timeout"):
        WatermarkTracker(0, 0)


def test_partition_becomes_idle_exactly_at_idle_timeout() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    tracker.observe(1_000, wall_ms=10_000)
    assert not tracker.is_idle(10_000 + IDLE - 1)
    assert tracker.is_idle(10_000 + IDLE)


def test_data_makes_an_idle_partition_active_again() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    tracker.observe(1_000, wall_ms=0)
    assert tracker.is_idle(IDLE)
    tracker.observe(500, wall_ms=IDLE + 1)
    assert not tracker.is_idle(IDLE + 1)


def test_partition_that_never_gets_data_times_out_from_its_start() -> None:
    tracker = WatermarkTracker(OOO, IDLE, start_wall_ms=1_000)
    assert not tracker.is_idle(1_000 + IDLE - 1)
    assert tracker.is_idle(1_000 + IDLE)


def test_without_start_time_the_idle_clock_starts_when_first_asked() -> None:
    tracker = WatermarkTracker(OOO, IDLE)
    assert not tracker.is_idle(50_000)
    assert tracker.is_idle(50_000 + IDLE)


def test_marker_flagged_idle_leaves_partition_out_at_once() -> None:
    tracker = WatermarkTracker(0, IDLE)
    tracker.advance(1_000, wall_ms=0, idle=True)
    assert tracker.is_idle(0)
    tracker.advance(1_500, wall_ms=1)
    assert not tracker.is_idle(1)


def test_combined_watermark_is_min_over_active_partitions() -> None:
    a = WatermarkTracker(0, IDLE)
    b = WatermarkTracker(0, IDLE)
    a.observe(10_000, wall_ms=0)
    b.observe(4_000, wall_ms=0)
    assert combine_watermarks([a, b], wall_ms=1) == 4_000


def test_partition_without_data_holds_combined_watermark_back_until_idle() -> None:
    a = WatermarkTracker(0, IDLE, start_wall_ms=0)
    empty = WatermarkTracker(0, IDLE, start_wall_ms=0)
    a.observe(10_000, wall_ms=0)
    assert combine_watermarks([a, empty], wall_ms=IDLE - 1) == NO_WATERMARK
    a.observe(10_000, wall_ms=IDLE)
    assert combine_watermarks([a, empty], wall_ms=IDLE) == 10_000


def test_idle_partition_stops_holding_back_and_resumes_with_data() -> None:
    combined: CombinedWatermark[int] = CombinedWatermark(0, IDLE)
    combined.observe(0, 10_000, wall_ms=0)
    combined.observe(1, 2_000, wall_ms=0)
    assert combined.current(wall_ms=0) == 2_000

    combined.observe(0, 20_000, wall_ms=IDLE)  # partition 1 silent for IDLE
    assert combined.current(wall_ms=IDLE) == 20_000

    combined.observe(1, 25_000, wall_ms=IDLE + 1)
    combined.observe(0, 30_000, wall_ms=IDLE + 1)
    assert combined.current(wall_ms=IDLE + 1) == 25_000


def test_combined_watermark_never_decreases_when_idle_partition_resumes() -> None:
    combined: CombinedWatermark[int] = CombinedWatermark(0, IDLE)
    combined.observe(0, 10_000, wall_ms=0)
    combined.observe(1, 2_000, wall_ms=0)
    combined.observe(0, 20_000, wall_ms=IDLE)
    assert combined.current(wall_ms=IDLE) == 20_000
    combined.observe(1, 3_000, wall_ms=IDLE + 1)  # back, but far behind
    assert combine_watermarks([combined.tracker(0), combined.tracker(1)], wall_ms=IDLE + 1) == 3_000
    assert combined.current(wall_ms=IDLE + 1) == 20_000


def test_when_all_partitions_are_idle_the_max_lets_windows_close() -> None:
    combined: CombinedWatermark[str] = CombinedWatermark(0, IDLE)
    combined.observe("a", 10_000, wall_ms=0)
    combined.observe("b", 7_000, wall_ms=0)
    assert combined.current(wall_ms=0) == 7_000
    assert combined.current(wall_ms=IDLE) == 10_000


def test_no_partitions_means_no_watermark() -> None:
    assert CombinedWatermark[int](0, IDLE).current(wall_ms=0) == NO_WATERMARK


def test_repartition_markers_advance_per_source_partition() -> None:
    combined: CombinedWatermark[tuple[str, int]] = CombinedWatermark(0, IDLE)
    combined.advance(("orders", 0), 5_000, wall_ms=0)
    combined.advance(("orders", 1), 3_000, wall_ms=0)
    assert combined.current(wall_ms=0) == 3_000
    combined.advance(("orders", 1), 1_000, wall_ms=1)  # stale marker: ignored
    assert combined.tracker(("orders", 1)).watermark == 3_000
    combined.advance(("orders", 1), 8_000, wall_ms=2)
    assert combined.current(wall_ms=2) == 5_000


def test_removed_partition_no_longer_holds_back() -> None:
    combined: CombinedWatermark[int] = CombinedWatermark(0, IDLE)
    combined.observe(0, 10_000, wall_ms=0)
    combined.observe(1, 1_000, wall_ms=0)
    combined.remove_partition(1)
    assert combined.current(wall_ms=0) == 10_000
    assert list(combined) == [0]
