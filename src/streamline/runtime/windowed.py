"""The window stage at run time: one task per input partition, with state, watermark and restore.

The window stage reads either the source partitions themselves (when the input is
already partitioned by the grouping key) or the partitions of `<name>.repartition`,
to which the stateless part of the topology writes records keyed by the grouping
key. Every source partition's watermark travels to every repartition partition as
a control marker, and a repartition task's watermark is the minimum over the source
partitions that are not idle.

Each task owns a `PartitionStore` (RocksDB behind the transaction overlay) and a
`WindowOperator`. The processor produces `pending_changes()` to the changelog in the
open transaction and calls `committed()` / `aborted()` afterwards. Nothing here
talks to Kafka: restore reads come in through `restore_from`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.record import ORIGINAL_HEADER, Record
from streamline.runtime.watermark import NO_WATERMARK, CombinedWatermark, WatermarkTracker
from streamline.runtime.window_operator import AddResult, WindowOperator, WindowResult
from streamline.state import WINDOW_STORE as STORE
from streamline.state.store import PartitionStore, partition_path
from streamline.topology.model import Topology, WindowSpec

log = logging.getLogger("streamline.runtime")

MARKER_HEADER = "streamline.watermark_marker"


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
    generation: int = 0

    @classmethod
    def of(cls, topology: Topology, state_dir: Path, generation: int = 0) -> WindowSettings:
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
            generation=generation,
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


class WindowTask:
    """The window stage for one input partition."""

    def __init__(
        self,
        settings: WindowSettings,
        topic: str,
        partition: int,
        source_partitions: list[tuple[str, int]] | None,
        wall_ms: int,
    ) -> None:
        self.topic = topic
        self.partition = partition
        path = partition_path(settings.state_dir, settings.topology, STORE, partition)
        self.store = PartitionStore(path, settings.generation, fingerprint=settings.fingerprint)
        self.operator = settings.operator(self.store)
        # direct input: the partition's own watermark; repartitioned: min over source partitions
        # Upstream instances mark their idle source partitions in the markers (sent at
        # least every idle_timeout / 2); a source partition silent for much longer than
        # that has no live owner, and is left out until it has one again.
        self._downstream_idle_ms = 3 * settings.idle_timeout_ms + 10_000
        self.direct: WatermarkTracker | None = None
        self.combined: CombinedWatermark[tuple[str, int]] | None = None
        if source_partitions is None:
            self.direct = WatermarkTracker(
                settings.max_out_of_orderness_ms, settings.idle_timeout_ms, start_wall_ms=wall_ms
            )
        else:
            self.combined = CombinedWatermark(0, self._downstream_idle_ms)
            for source in source_partitions:
                self.combined.add_partition(source, wall_ms)

    def watermark(self, wall_ms: int) -> int:
        if self.direct is not None:
            return self.direct.watermark
        assert self.combined is not None
        return self.combined.current(wall_ms)

    def add(
        self, key: str, value: dict[str, Any], event_time: int, seq: int, wall_ms: int
    ) -> tuple[AddResult, int]:
        """Adds one record at the watermark before it, then lets its event time move the watermark."""
        watermark = self.watermark(wall_ms)
        result = self.operator.add(key, value, event_time, seq, watermark)
        if self.direct is not None:
            self.direct.observe(event_time, wall_ms)
        return result, watermark

    def marker(self, source: tuple[str, int], watermark: int, idle: bool, wall_ms: int) -> None:
        assert self.combined is not None
        if source not in self.combined:
            self.combined.add_partition(source, wall_ms)
        self.combined.advance(source, watermark, wall_ms, idle=idle)

    def reset_watermark(self, wall_ms: int) -> None:
        """Forgets watermark progress of an aborted transaction (the operator keeps the committed one)."""
        self.started(wall_ms)

    def started(self, wall_ms: int) -> None:
        """Starts the watermark over (from the operator's committed one) at `wall_ms`."""
        if self.direct is not None:
            self.direct = WatermarkTracker(
                self.direct.max_out_of_orderness_ms,
                self.direct.idle_timeout_ms,
                start_wall_ms=wall_ms,
            )
            return
        assert self.combined is not None
        sources = list(self.combined)
        self.combined = CombinedWatermark(0, self._downstream_idle_ms)
        for source in sources:
            self.combined.add_partition(source, wall_ms)

    def fire(self, wall_ms: int) -> list[WindowResult]:
        watermark = self.watermark(wall_ms)
        if watermark == NO_WATERMARK:
            return []
        return self.operator.fire(watermark)

    def close(self) -> None:
        self.store.close()


class SourceWatermarks:
    """Watermarks of the source partitions this process reads, for the repartition markers."""

    def __init__(self, max_out_of_orderness_ms: int, idle_timeout_ms: int) -> None:
        self.ooo = max_out_of_orderness_ms
        self.idle = idle_timeout_ms
        self.trackers: dict[tuple[str, int], WatermarkTracker] = {}

    def assign(self, tp: tuple[str, int], wall_ms: int) -> None:
        self.trackers[tp] = WatermarkTracker(self.ooo, self.idle, start_wall_ms=wall_ms)

    def revoke(self, tp: tuple[str, int]) -> None:
        self.trackers.pop(tp, None)

    def observe(self, tp: tuple[str, int], event_time: int, wall_ms: int) -> None:
        tracker = self.trackers.get(tp)
        if tracker is not None:
            tracker.observe(event_time, wall_ms)

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


def encode_repartitioned(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode_repartitioned(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def restore_task(
    task: WindowTask,
    high_watermark: int,
    start_of: Callable[[int], Iterator[list[tuple[bytes, bytes | None]]]],
    end_of: Callable[[], int],
) -> int:
    """Replays the changelog into the task's store; returns the number of records replayed.

    Local state with a checkpoint of this generation replays from the checkpoint; other
    local state is wiped and the whole changelog replayed.
    """
    started = time.monotonic()
    start = task.store.begin_restore(high_watermark)
    replayed = 0
    for chunk in start_of(start):
        task.store.restore(chunk)
        replayed += len(chunk)
    task.store.finish_restore(max(start, end_of()))
    log.info(
        "restored %s partition %d: %d changelog records from offset %d in %.2fs (%s)",
        STORE,
        task.partition,
        replayed,
        start,
        time.monotonic() - started,
        "local checkpoint" if start > 0 else "from the beginning",
    )
    return replayed


def record_from_repartition(record: Record) -> tuple[dict[str, Any], int, bytes | None]:
    """(value, event time, original bytes) of a record read from the repartition topic."""
    headers = dict(record.headers or [])
    assert record.raw is not None
    return (
        decode_repartitioned(record.raw),
        int(headers["streamline.event_time"]),
        headers.get(ORIGINAL_HEADER),
    )
