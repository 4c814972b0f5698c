"""Event-time watermarks: how far event time has progressed, per partition and combined.

A watermark ``w`` is a promise: records with an event time at or below ``w`` are
no longer expected. Windows use it to decide when they may fire (see
``windows.window_fires``). This module only tracks the watermark; it knows
nothing about windows, Kafka or clocks: callers pass the wall-clock time
(``wall_ms``) in, so every rule here is deterministic and unit-testable.

- ``WatermarkTracker``: one input partition. Its watermark is
  ``max(event time seen) - max_out_of_orderness``, never decreasing
  (docs/topology.md, "Windows, watermarks and lateness").
- ``combine_watermarks`` / ``CombinedWatermark``: the watermark of a task that
  reads several partitions (or of a repartition partition fed by control
  markers from every source partition): the minimum over the partitions that
  are not idle.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Final, Generic, TypeVar

NO_WATERMARK: Final[int] = -(2**63)
"""The watermark before any event time is known: below every real timestamp."""

DEFAULT_IDLE_TIMEOUT_MS: Final[int] = 60_000
"""The spec's default ``watermark.idle_timeout`` (60s)."""

K = TypeVar("K", bound=Hashable)


class WatermarkTracker:
    """The watermark of one input partition, and whether that partition is idle.

    The watermark moves forward in two ways: ``observe`` (a record was read
    from the partition) and ``advance`` (an externally computed watermark, e.g.
    from a repartition control marker). It never decreases.

    A partition is *idle* once ``idle_timeout_ms`` of wall-clock time has passed
    without a record (or a non-idle marker); an idle partition stops holding
    the combined watermark back until it has data again. The idle clock starts
    at ``start_wall_ms`` (when the partition was assigned); if that is not
    given, at the first wall-clock time the tracker is shown, so a partition
    that never receives anything still becomes idle and cannot block windows
    forever.
    """

    __slots__ = (
        "_forced_idle",
        "_last_activity_wall_ms",
        "_max_event_time_ms",
        "_watermark",
        "idle_timeout_ms",
        "max_out_of_orderness_ms",
    )

    def __init__(
        self,
        max_out_of_orderness_ms: int,
        idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS,
        *,
        start_wall_ms: int | None = None,
    ) -> None:
        if max_out_of_orderness_ms < 0:
            raise ValueError(f"max_out_of_orderness must be >= 0 ms, got {max_out_of_orderness_ms}")
        if idle_timeout_ms <= 0:
            raise ValueError(f"idle_timeout must be > 0 ms, got {idle_timeout_ms}")
        self.max_out_of_orderness_ms: Final = max_out_of_orderness_ms
        self.idle_timeout_ms: Final = idle_timeout_ms
        self._max_event_time_ms = NO_WATERMARK
        self._watermark = NO_WATERMARK
        self._last_activity_wall_ms = start_wall_ms
        self._forced_idle = False

    @property
    def watermark(self) -> int:
        """The current watermark in epoch ms, ``NO_WATERMARK`` before any record."""
        return self._watermark

    @property
    def max_event_time_ms(self) -> int:
        """The largest event time observed (for heartbeats), ``NO_WATERMARK`` if none."""
        return self._max_event_time_ms

    @property
    def last_activity_wall_ms(self) -> int | None:
        """Wall-clock time of the last record or non-idle marker, if any."""
        return self._last_activity_wall_ms

    def observe(self, event_time_ms: int, wall_ms: int) -> int:
        """Account for a record read from this partition; return the new watermark.

        A record behind the maximum (out of order) does not lower anything, but
        it still counts as activity: the partition is not idle.
        """
        if event_time_ms > self._max_event_time_ms:
            self._max_event_time_ms = event_time_ms
            candidate = event_time_ms - self.max_out_of_orderness_ms
            if candidate > self._watermark:
                self._watermark = candidate
        self._last_activity_wall_ms = wall_ms
        self._forced_idle = False
        return self._watermark

    def advance(self, watermark_ms: int, wall_ms: int, *, idle: bool = False) -> int:
        """Raise the watermark to an externally computed value; return the new watermark.

        Used where the watermark is not derived from records read here, e.g. a
        repartition partition receiving an upstream partition's watermark as a
        control marker. A lower value than the current watermark is ignored.
        ``idle=True`` says the upstream partition is itself idle: it is left out
        of the combined watermark right away, until data (a record or a marker
        with ``idle=False``) arrives again.
        """
        if watermark_ms > self._watermark:
            self._watermark = watermark_ms
        self._forced_idle = idle
        if not idle:
            self._last_activity_wall_ms = wall_ms
        return self._watermark

    def is_idle(self, wall_ms: int) -> bool:
        """Whether the partition has had no data for at least ``idle_timeout_ms`` at ``wall_ms``."""
        if self._forced_idle:
            return True
        if self._last_activity_wall_ms is None:
            # Start the idle clock now: a partition nobody has written to yet
            # must still be able to time out.
            self._last_activity_wall_ms = wall_ms
            return False
        return wall_ms - self._last_activity_wall_ms >= self.idle_timeout_ms

    def __repr__(self) -> str:
        return (
            f"WatermarkTracker(watermark={self._watermark}, "
            f"max_event_time_ms={self._max_event_time_ms}, "
            f"last_activity_wall_ms={self._last_activity_wall_ms})"
        )


def combine_watermarks(trackers: Iterable[WatermarkTracker], wall_ms: int) -> int:
    """The watermark of a set of partitions at ``wall_ms``.

    The minimum over the partitions that are not idle; if every partition is
    idle, the maximum of them (so windows can still close when all input has
    stopped); ``NO_WATERMARK`` when there are no partitions. This value may go
    down when an idle partition resumes; ``CombinedWatermark`` keeps it monotone.
    """
    active_min: int | None = None
    idle_max = NO_WATERMARK
    for tracker in trackers:
        wm = tracker.watermark
        if tracker.is_idle(wall_ms):
            if wm > idle_max:
                idle_max = wm
        elif active_min is None or wm < active_min:
            active_min = wm
    return idle_max if active_min is None else active_min


class CombinedWatermark(Generic[K]):
    """The never-decreasing watermark over several partitions, keyed by ``K``.

    One instance per consumer of several watermark inputs: a task reading
    several source partitions, or a repartition partition whose watermark is
    the minimum over every source partition's control markers (keyed by the
    source partition). ``current`` returns ``combine_watermarks`` of the
    trackers, but never less than a value it returned before: a partition that
    resumes after being idle with an older watermark cannot un-fire windows;
    its records behind the combined watermark are late.
    """

    def __init__(
        self,
        max_out_of_orderness_ms: int = 0,
        idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS,
        trackers: Mapping[K, WatermarkTracker] | None = None,
    ) -> None:
        self.max_out_of_orderness_ms: Final = max_out_of_orderness_ms
        self.idle_timeout_ms: Final = idle_timeout_ms
        self._trackers: dict[K, WatermarkTracker] = dict(trackers or {})
        self._emitted = NO_WATERMARK

    def add_partition(self, key: K, wall_ms: int | None = None) -> WatermarkTracker:
        """Start tracking a partition (idle clock from ``wall_ms``); return its tracker.

        Adding a partition that is already tracked returns the existing tracker.
        """
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = WatermarkTracker(
                self.max_out_of_orderness_ms, self.idle_timeout_ms, start_wall_ms=wall_ms
            )
            self._trackers[key] = tracker
        return tracker

    def remove_partition(self, key: K) -> None:
        """Stop tracking a partition (e.g. revoked in a rebalance); unknown keys are ignored."""
        self._trackers.pop(key, None)

    def tracker(self, key: K) -> WatermarkTracker:
        """The tracker of one partition; ``KeyError`` if it is not tracked."""
        return self._trackers[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._trackers)

    def __len__(self) -> int:
        return len(self._trackers)

    def observe(self, key: K, event_time_ms: int, wall_ms: int) -> int:
        """Account for a record of partition ``key`` (added if new); return its watermark."""
        return self.add_partition(key, wall_ms).observe(event_time_ms, wall_ms)

    def advance(self, key: K, watermark_ms: int, wall_ms: int, *, idle: bool = False) -> int:
        """Apply an external watermark (a control marker) to partition ``key`` (added if new).

        Monotone per partition; returns the partition's watermark. See
        ``WatermarkTracker.advance`` for ``idle``.
        """
        return self.add_partition(key, wall_ms).advance(watermark_ms, wall_ms, idle=idle)

    def current(self, wall_ms: int) -> int:
        """The combined watermark at ``wall_ms``; never lower than a value returned before."""
        combined = combine_watermarks(self._trackers.values(), wall_ms)
        if combined > self._emitted:
            self._emitted = combined
        return self._emitted
