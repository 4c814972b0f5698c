"""How windowed reconcile places an input: a fired window's range, or a window not fired yet."""

from __future__ import annotations

from streamline.ops.reconcile_windows import (
    NO_TIME,
    WindowCoverage,
    WindowReaders,
    WindowShape,
)
from streamline.runtime.windows import HoppingWindows, TumblingWindows

TP = ("orders", 0)


def coverage(shape: WindowShape, span: tuple[int, int]) -> WindowCoverage:
    readers = WindowReaders(lambda v: int(v or b"0"), lambda v: int(v or b"0"))
    return WindowCoverage(shape, readers, {TP: list(span)})


def test_overlapping_and_adjacent_ranges_merge_and_are_clipped_to_the_span() -> None:
    cov = coverage(WindowShape(TumblingWindows(60_000)), (10, 29))
    for first, last in [(5, 12), (12, 14), (15, 15), (20, 22), (28, 40)]:
        assert cov.add(TP, first, last, b"60000")
    assert not cov.add(("orders", 1), 0, 5, b"60000")  # not a partition of the range
    assert list(cov.covered(TP)) == [1] * 6 + [0] * 4 + [1] * 3 + [0] * 5 + [1] * 2


def test_a_record_is_open_when_its_first_window_ends_after_the_last_fired_one() -> None:
    cov = coverage(WindowShape(TumblingWindows(60_000)), (0, 2))
    cov.saw(TP, 0, b"59999")  # window [0, 60000)
    cov.saw(TP, 1, b"60000")  # window [60000, 120000)
    cov.add(TP, 0, 0, b"60000")
    assert not cov.open(TP, 0)
    assert cov.open(TP, 1)
    assert not cov.open(TP, 2)  # never read (NO_TIME): not open
    assert cov.times[TP][2] == NO_TIME


def test_a_hopping_record_is_open_only_while_its_first_window_has_not_fired() -> None:
    cov = coverage(WindowShape(HoppingWindows(180_000, 60_000)), (0, 0))
    cov.saw(TP, 0, b"150000")  # windows [0,180000), [60000,240000), [120000,300000)
    cov.add(TP, 0, 0, b"120000")
    assert cov.open(TP, 0)
    cov.add(TP, 0, 0, b"180000")
    assert not cov.open(TP, 0)
