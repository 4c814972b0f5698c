"""The window stage at run time: window state per input partition, watermarks and markers.

The window stage reads either the source partitions themselves (when the input is
already partitioned by the grouping key) or the partitions of `<name>.repartition`,
to which the stateless part of the topology writes records keyed by the grouping
key. Every source partition's watermark travels to every repartition partition as
a control marker, and a repartition task's watermark is the minimum over the source
partitions that are not idle.

`WindowStage` is the window state of one partition, a `StatefulOperator` (see
`runtime/operators.py`): a `WindowOperator` over one `PartitionStore` (RocksDB behind
the transaction overlay) restored from `<name>.windows.changelog`. The task that holds
it (`runtime/task.py`) writes the store's pending changes to the changelog in the open
transaction and commits or rolls the store back with it. `SourceWatermarks` tracks the
source partitions upstream for the markers. Nothing here talks to Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

from streamline import headers as h
from streamline.reliability.dead_letter import Failure
from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.operators import OperatorOutput, OperatorStore, StoreSpec
from streamline.runtime.record import Record
from streamline.runtime.repartition_codec import decode_repartitioned, origin_headers
from streamline.runtime.watermark import NO_WATERMARK, CombinedWatermark, WatermarkTracker
from streamline.runtime.window_operator import WindowOperator
from streamline.runtime.window_state import WindowResult
from streamline.state import WINDOW_STORE as STORE
from streamline.state.store import PartitionStore, partition_path
from streamline.topology.model import Topology, WindowSpec

AGGREGATE = "aggregate"
"""The error type of a record the window stage cannot take (and of one it does not hold)."""
_partition_of = attrgetter("topic", "partition")
_event_time = attrgetter("event_time")


@dataclass(frozen=True)
class WindowSettings:
    """What every window task of a topology shares."""

    topology: str
    fingerprint: str
    spec: WindowSpec
    aggregates: AggregateSpec
    key_name: str
    max_out_of_orderness_ms: int
    idle_timeout_ms: int
    state_dir: Path
    changelog_topic: str
    input_topic: str
    """The topic whose partitions the window stages read."""
    repartitioned: bool
    """Whether that is `<name>.repartition` (records keyed upstream, with watermark markers)."""
    retry_topic: str
    stage: str
    """The window stage's path in the topology, as failures name it."""

    @classmethod
    def of(cls, topology: Topology, state_dir: Path, repartitioned: bool) -> WindowSettings:
        spec = topology.window
        key = topology.key_by
        assert spec is not None and key is not None
        aggregates = AggregateSpec(
            {name: f"{call.function}({call.field or ''})" for name, call in spec.aggregate.items()}
        )
        watermark = topology.source.watermark
        return cls(
            topology=topology.name,
            fingerprint=topology.fingerprint,
            spec=spec,
            aggregates=aggregates,
            key_name=key.key_name,
            max_out_of_orderness_ms=watermark.max_out_of_orderness,
            idle_timeout_ms=watermark.idle_timeout,
            state_dir=state_dir,
            changelog_topic=topology.changelog_topic(STORE),
            input_topic=topology.repartition_topic if repartitioned else topology.sources[0].topic,
            repartitioned=repartitioned,
            retry_topic=topology.retry_topic,
            stage=f"stages[{len(topology.stages) - 1}].window",
        )

    def operator(self, store: PartitionStore) -> WindowOperator:
        spec = self.spec
        hopping = spec.hopping
        session = spec.session
        return WindowOperator(
            spec.kind,
            size_ms=spec.tumbling
            if spec.tumbling is not None
            else (hopping.size if hopping else None),
            advance_ms=hopping.advance if hopping else None,
            gap_ms=session.gap if session else None,
            allowed_lateness_ms=spec.allowed_lateness,
            aggregates=self.aggregates,
            emit=spec.emit,
            store=store,
        )

    def result_value(self, result: WindowResult) -> dict[str, Any]:
        """The sink record of one window result."""
        return {
            self.key_name: result.key,
            "window_start": result.window_start,
            "window_end": result.window_end,
            **result.aggregates,
        }


class WindowStage:
    """Window state of one partition: a `WindowOperator` over its store, and its watermark.

    One implementation of `operators.StatefulOperator`, in two kinds: `DirectWindowStage`
    reads the source partition itself and keeps its own watermark;
    `RepartitionedWindowStage` reads `<name>.repartition`, whose watermark is the minimum
    over the source partitions', which arrive as marker records.
    """

    def __init__(
        self,
        settings: WindowSettings,
        partition: int,
        generation: int,
        store: PartitionStore | None = None,
    ) -> None:
        """`store`: the partition's store already open (a standby's, handed over)."""
        self.settings = settings
        self.stage = settings.stage
        self.partition = partition
        path = partition_path(settings.state_dir, settings.topology, STORE, partition)
        self.store = store or PartitionStore(path, generation, fingerprint=settings.fingerprint)
        self.stores = [OperatorStore(StoreSpec(STORE, settings.changelog_topic), self.store)]
        self.operator = settings.operator(self.store)

    def watermark(self, wall_ms: int) -> int:
        raise NotImplementedError

    def punctuate(self, wall_ms: int) -> list[Record]:
        """The windows the watermark has passed."""
        watermark = self.watermark(wall_ms)
        if watermark == NO_WATERMARK:
            return []
        results = self.operator.fire(watermark)
        return self._records(results) if results else []

    def _failed(self, record: Record, exc: Exception, out: OperatorOutput) -> None:
        out.fail(record, Failure(AGGREGATE, f"cannot aggregate: {exc!r}", self.stage))

    def _records(self, results: Iterable[WindowResult]) -> list[Record]:
        """Sink records of window results; their source range is the window's input offsets."""
        records = []
        result_value = self.settings.result_value
        topic = self.settings.input_topic
        for result in results:
            record = Record(topic, self.partition, result.min_seq, None, None, None)
            record.last_offset = result.max_seq
            record.value = result_value(result)
            record.event_time = result.max_event_time
            record.out_key = result.key.encode()
            records.append(record)
        return records


class DirectWindowStage(WindowStage):
    """Window state of a source partition, keyed by the stages: its own watermark."""

    def __init__(
        self,
        settings: WindowSettings,
        partition: int,
        generation: int,
        wall_ms: int,
        store: PartitionStore | None = None,
    ) -> None:
        super().__init__(settings, partition, generation, store)
        self.tracker = WatermarkTracker(
            settings.max_out_of_orderness_ms, settings.idle_timeout_ms, start_wall_ms=wall_ms
        )

    def watermark(self, wall_ms: int) -> int:
        return self.tracker.watermark

    def started(self, wall_ms: int) -> None:
        """Starts the watermark over (from the operator's committed one) at `wall_ms`."""
        settings = self.settings
        self.tracker = WatermarkTracker(
            settings.max_out_of_orderness_ms, settings.idle_timeout_ms, start_wall_ms=wall_ms
        )

    def process(self, records: list[Record], wall_ms: int, out: OperatorOutput) -> None:
        """Adds each record at the watermark before it; its event time then moves the watermark."""
        retry_topic = self.settings.retry_topic
        add = self.operator.add
        tracker = self.tracker
        observe = tracker.observe
        for record in records:
            seq = record.offset
            if record.topic == retry_topic:  # back from the retry topic: its source's offset
                seq = record.origin()[2]
            key = record.out_key.decode() if record.out_key is not None else None
            try:
                watermark = tracker.watermark
                result = add(str(key), record.value, record.event_time, seq, watermark)
                observe(record.event_time, wall_ms)
            except (KeyError, TypeError, ValueError) as exc:
                self._failed(record, exc, out)
                continue
            if result.late_reason is not None:
                out.late(record, result.late_reason, watermark)
            elif result.updates:
                out.emit(self._records(result.updates))


class RepartitionedWindowStage(WindowStage):
    """Window state of a repartition partition: the minimum of the source watermarks."""

    def __init__(
        self,
        settings: WindowSettings,
        partition: int,
        generation: int,
        source_partitions: list[tuple[str, int]],
        wall_ms: int,
        store: PartitionStore | None = None,
    ) -> None:
        super().__init__(settings, partition, generation, store)
        # Upstream instances mark their idle source partitions in the markers (sent at
        # least every idle_timeout / 2); a source partition silent for much longer than
        # that has no live owner, and is left out until it has one again.
        self._downstream_idle_ms = 3 * settings.idle_timeout_ms + 10_000
        self.combined: CombinedWatermark[tuple[str, int]] = CombinedWatermark(
            0, self._downstream_idle_ms
        )
        for source in source_partitions:
            self.combined.add_partition(source, wall_ms)

    def watermark(self, wall_ms: int) -> int:
        return self.combined.current(wall_ms)

    def started(self, wall_ms: int) -> None:
        """Starts the watermark over (from the operator's committed one) at `wall_ms`."""
        sources = list(self.combined)
        self.combined = CombinedWatermark(0, self._downstream_idle_ms)
        for source in sources:
            self.combined.add_partition(source, wall_ms)

    def process(self, records: list[Record], wall_ms: int, out: OperatorOutput) -> None:
        """Takes the markers; adds each keyed record at the watermark before it."""
        key_name = self.settings.key_name
        add = self.operator.add
        current = self.combined.current
        # Only a marker moves the combined watermark at one wall time: it is computed
        # again after one, not for every record.
        watermark = current(wall_ms)
        for record in records:
            if record.raw is None:  # a marker (a keyed record always has a value)
                marker = dict(record.headers or []).get(h.WATERMARK_MARKER)
                if marker is not None:
                    self.marker(*decode_marker(marker), wall_ms)
                    watermark = current(wall_ms)
                    continue
            value, event_time, key, fields = decode_repartitioned(record, key_name)
            record.value, record.event_time = value, event_time
            try:
                result = add(str(key), value, event_time, record.offset, watermark)
            except (KeyError, TypeError, ValueError) as exc:
                if fields is not None:  # dead letters name the source record
                    record.headers = origin_headers(fields)
                self._failed(record, exc, out)
                continue
            if result.late_reason is not None:
                if fields is not None:
                    record.headers = origin_headers(fields)
                out.late(record, result.late_reason, watermark)
            elif result.updates:
                out.emit(self._records(result.updates))

    def marker(self, source: tuple[str, int], watermark: int, idle: bool, wall_ms: int) -> None:
        if source not in self.combined:
            self.combined.add_partition(source, wall_ms)
        self.combined.advance(source, watermark, wall_ms, idle=idle)


def window_stage(
    settings: WindowSettings,
    partition: int,
    generation: int,
    source_partitions: list[tuple[str, int]] | None,
    wall_ms: int,
    store: PartitionStore | None = None,
) -> DirectWindowStage | RepartitionedWindowStage:
    """The window stage of one partition: reading the sources directly, or `<name>.repartition`
    (whose watermark combines `source_partitions`) when those are given. `store`: the
    partition's store already open (a standby's, handed over), else it is opened."""
    if source_partitions is None:
        return DirectWindowStage(settings, partition, generation, wall_ms, store)
    return RepartitionedWindowStage(
        settings, partition, generation, source_partitions, wall_ms, store
    )


class SourceWatermarks:
    """Watermarks of the source partitions this process reads, for the repartition markers."""

    def __init__(self, max_out_of_orderness_ms: int, idle_timeout_ms: int) -> None:
        self.ooo = max_out_of_orderness_ms
        self.idle = idle_timeout_ms
        self.trackers: dict[tuple[str, int], WatermarkTracker] = {}
        self.consumed: dict[tuple[str, int], int] = {}
        """Largest event time of every record consumed per source partition, including the
        ones a filter, a validation or a map dropped or dead-lettered (heartbeats only: the
        trackers, which drive windows and markers, see the records that pass the stages)."""

    def assign(self, tp: tuple[str, int], wall_ms: int) -> None:
        self.trackers[tp] = WatermarkTracker(self.ooo, self.idle, start_wall_ms=wall_ms)
        self.consumed.pop(tp, None)

    def reset(self, wall_ms: int) -> None:
        """Starts every partition's watermark over (the records that moved it were aborted)."""
        for tp in list(self.trackers):
            self.assign(tp, wall_ms)

    def revoke(self, tp: tuple[str, int]) -> None:
        self.trackers.pop(tp, None)
        self.consumed.pop(tp, None)

    def observe_consumed(self, records: Iterable[Record]) -> None:
        """Every consumed record that has an event time (a record that failed before the
        event-time stage has none: 0) moves its partition's freshness. The loop calls it
        only for batches the stages dropped or failed records of: else `observe_all` has
        seen them all."""
        consumed, trackers = self.consumed, self.trackers
        for tp, run in groupby(records, _partition_of):  # runs of one partition, as consumed
            if tp not in trackers:
                continue
            times = list(map(_event_time, run))
            latest = max(times)
            if latest <= 0:  # 0: no event time; the largest real one may be below it
                latest = max((t for t in times if t), default=NO_WATERMARK)
            if latest != NO_WATERMARK and latest > consumed.get(tp, NO_WATERMARK):
                consumed[tp] = latest

    def freshness(self, tp: tuple[str, int]) -> tuple[int, int] | None:
        """(watermark, last event time) of a source partition for heartbeats: the tracker's,
        moved on by the consumed records the stages dropped; None before any event time."""
        tracker = self.trackers.get(tp)
        seen = self.consumed.get(tp)
        if tracker is None:
            return None
        known = tracker.max_event_time_ms != NO_WATERMARK
        if seen is None:
            return (tracker.watermark, tracker.max_event_time_ms) if known else None
        if not known:
            return seen - self.ooo, seen
        return max(tracker.watermark, seen - self.ooo), max(tracker.max_event_time_ms, seen)

    def observe(self, tp: tuple[str, int], event_time: int, wall_ms: int) -> None:
        tracker = self.trackers.get(tp)
        if tracker is not None:
            tracker.observe(event_time, wall_ms)

    def observe_all(self, records: Iterable[Record], wall_ms: int | None = None) -> None:
        """Source partitions' event-time progress (for heartbeats and markers), seen at
        `wall_ms` (now, when not given)."""
        if wall_ms is None:
            wall_ms = int(time.time() * 1000)
        observe = self.observe
        # A partition's tracker keeps the largest event time and marks the partition
        # active: the largest of a run, observed once, does the same as each in turn.
        for tp, run in groupby(records, _partition_of):  # runs of one partition, as consumed
            observe(tp, max(map(_event_time, run)), wall_ms)

    def markers(
        self, wall_ms: int, caught_up: Callable[[tuple[str, int]], bool]
    ) -> Iterator[tuple[tuple[str, int], int, bool]]:
        """(source partition, watermark, idle) of every assigned source partition.

        A partition is idle when it has had no record for `idle_timeout` and this
        process has read all it holds: a partition with a backlog is never idle.
        """
        for tp, tracker in self.trackers.items():
            yield tp, tracker.watermark, tracker.is_idle(wall_ms) and caught_up(tp)


def encode_marker(source: tuple[str, int], watermark: int, idle: bool) -> bytes:
    return f"{source[0]}|{source[1]}|{watermark}|{int(idle)}".encode()


def decode_marker(data: bytes) -> tuple[tuple[str, int], int, bool]:
    topic, partition, watermark, idle = data.decode().rsplit("|", 3)
    return (topic, int(partition)), int(watermark), idle == "1"
