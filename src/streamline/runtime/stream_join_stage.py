"""The stream-stream join stage at run time: one partition's join buffers and watermark.

Both sides are read from the sources themselves, co-partitioned by the join key: the
task of partition n takes partition n of the left sources (whose records went through
the stages before the join) and of the joined stream (decoded with its own schema). The
join's watermark is the minimum of both sides' (each side's own `max_out_of_orderness`
and `idle_timeout`: an idle side stops holding it back), never below the one the buffers
were last expired at. `StreamJoinStage` is a `StatefulOperator` (`runtime/operators.py`)
over one `PartitionStore` restored from `<name>.joins.changelog`; nothing here talks to
Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.operators import OperatorOutput, OperatorStore, StoreSpec
from streamline.runtime.record import Record
from streamline.runtime.stream_join import LEFT, RIGHT, Buffered, JoinBuffers
from streamline.runtime.watermark import NO_WATERMARK, CombinedWatermark, WatermarkTracker
from streamline.state.store import PartitionStore, partition_path
from streamline.topology import CheckedTopology
from streamline.topology.model import Source, source_named, stream_join_of

STORE = "joins"
"""The store of a stream join (changelog `<name>.joins.changelog`)."""
JOIN = "join"
"""The error type of a record a stream join cannot take (no join key)."""


@dataclass(frozen=True)
class StreamJoinSettings:
    """What every partition of a topology's stream join shares."""

    topology: str
    fingerprint: str
    stage: str
    state_dir: Path
    changelog_topic: str
    retry_topic: str
    right_topic: str
    left_topics: tuple[str, ...]
    left_on: str
    right_on: str
    within_ms: int
    allowed_lateness_ms: int
    join_type: Literal["inner", "left", "outer"]
    fields: tuple[tuple[str, str], ...]
    """(new field, joined stream's field) of each field the join adds."""
    left_fields: tuple[str, ...]
    """The fields of the records reaching the join (null in an unmatched right record)."""
    left_watermark: tuple[int, int]
    right_watermark: tuple[int, int]
    """(max_out_of_orderness, idle_timeout) of each side."""

    @classmethod
    def of(cls, checked: CheckedTopology, state_dir: Path) -> StreamJoinSettings | None:
        topology = checked.topology
        found = stream_join_of(topology)
        if found is None:
            return None
        index, spec = found
        assert spec.stream is not None and spec.within is not None
        right = source_named(topology, spec.stream)
        lefts = [s for s in topology.sources if s.name != spec.stream]
        reaching = checked.source_schema  # the schema of the records reaching the join
        for stage in checked.stages:
            if stage.index < index and stage.output_schema is not None:
                reaching = stage.output_schema

        def watermark(source: Source) -> tuple[int, int]:
            return source.watermark.max_out_of_orderness, source.watermark.idle_timeout

        return cls(
            topology=topology.name,
            fingerprint=topology.fingerprint,
            stage=f"stages[{index}].join",
            state_dir=state_dir,
            changelog_topic=topology.changelog_topic(STORE),
            retry_topic=topology.retry_topic,
            right_topic=right.topic,
            left_topics=tuple(s.topic for s in lefts),
            left_on=spec.left_on,
            right_on=spec.right_on,
            within_ms=spec.within,
            allowed_lateness_ms=spec.allowed_lateness,
            join_type=spec.type,
            fields=tuple(spec.fields.items()),
            left_fields=tuple(reaching.fields),
            left_watermark=watermark(topology.sources[0]),
            right_watermark=watermark(right),
        )

    # --- the output values --------------------------------------------------------------

    def joined(self, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
        value = dict(left)
        for new, field in self.fields:
            value[new] = right.get(field)
        return value

    def unmatched(self, record: Buffered) -> dict[str, Any]:
        """The output of a record that never matched: the other side's fields null."""
        if record.side == LEFT:
            value = dict(record.value)
            for new, _ in self.fields:
                value[new] = None
            return value
        value = dict.fromkeys(self.left_fields)
        value[self.left_on] = record.value.get(self.right_on)
        for new, field in self.fields:
            value[new] = record.value.get(field)
        return value


class StreamJoinStage:
    """The join buffers of one partition and the join's watermark over both sides."""

    def __init__(
        self,
        settings: StreamJoinSettings,
        partition: int,
        generation: int,
        wall_ms: int,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.stage = settings.stage
        self.partition = partition
        path = partition_path(settings.state_dir, settings.topology, STORE, partition)
        self.store = PartitionStore(path, generation, fingerprint=settings.fingerprint)
        self.stores = [OperatorStore(StoreSpec(STORE, settings.changelog_topic), self.store)]
        self.buffers = JoinBuffers(
            self.store,
            settings.within_ms,
            settings.allowed_lateness_ms,
            settings.join_type,
            [*settings.left_topics, settings.right_topic],
        )
        self.metrics = metrics.stream_joins
        self.combined = self._watermarks(wall_ms)
        self._floor = NO_WATERMARK
        self._buffered = 0

    def _watermarks(self, wall_ms: int) -> CombinedWatermark[str]:
        s = self.settings
        return CombinedWatermark(
            trackers={
                LEFT: WatermarkTracker(*s.left_watermark, start_wall_ms=wall_ms),
                RIGHT: WatermarkTracker(*s.right_watermark, start_wall_ms=wall_ms),
            }
        )

    def started(self, wall_ms: int) -> None:
        """Starts the watermark over, never below the one the buffers were expired at."""
        self.combined = self._watermarks(wall_ms)
        expired_at = self.buffers.expired_at()
        self._floor = NO_WATERMARK if expired_at is None else expired_at
        self._buffered = self.buffers.buffered()
        self.metrics.set_buffered(self.stage, self.partition, self._buffered)

    def watermark(self, wall_ms: int) -> int:
        return max(self._floor, self.combined.current(wall_ms))

    def process(self, records: list[Record], wall_ms: int, out: OperatorOutput) -> None:
        """Matches each record against the other side, then buffers it (or sends it late)."""
        s = self.settings
        right_topic, retry_topic = s.right_topic, s.retry_topic
        left_tracker, right_tracker = self.combined.tracker(LEFT), self.combined.tracker(RIGHT)
        buffers = self.buffers
        lateness = buffers.lateness
        emitted: list[Record] = []
        for record in records:
            side = RIGHT if record.topic == right_topic else LEFT
            key = record.value.get(s.right_on if side == RIGHT else s.left_on)
            if key is None:
                why = f"no join key: field {s.right_on if side == RIGHT else s.left_on} is null"
                out.fail(record, Failure(JOIN, why, self.stage))
                continue
            time = record.event_time
            watermark = self.watermark(wall_ms)
            if time < watermark - lateness:  # buffers.is_late
                out.late(record, "join window closed", watermark)
                continue
            origin = record.origin() if record.topic == retry_topic else (
                record.topic, record.partition, record.offset
            )  # fmt: skip
            arrived = Buffered(side, str(key), time, record.value, origin)
            for match in buffers.add(arrived):
                left, right = (arrived, match) if side == LEFT else (match, arrived)
                emitted.append(self._output(s.joined(left.value, right.value), record, match))
            self._buffered += 1
            (right_tracker if side == RIGHT else left_tracker).observe(time, wall_ms)
        if emitted:
            self.metrics.matched(self.stage, len(emitted))
            out.emit(emitted)

    def punctuate(self, wall_ms: int) -> list[Record]:
        """Expires what the watermark has passed; the unmatched records a join type keeps."""
        watermark = self.watermark(wall_ms)
        if watermark == NO_WATERMARK or watermark <= self._floor:
            return []
        unmatched, dropped = self.buffers.expire(watermark)
        self._floor = watermark
        self._buffered -= dropped
        self.metrics.set_buffered(self.stage, self.partition, self._buffered)
        if not unmatched:
            return []
        for side in (LEFT, RIGHT):
            n = sum(1 for u in unmatched if u.side == side)
            if n:
                self.metrics.unmatched(self.stage, "left" if side == LEFT else "right", n)
        settings = self.settings
        outputs = []
        for buffered in unmatched:
            topic, partition, offset = buffered.origin
            record = Record(topic, partition, offset, None, None, None)
            record.value = settings.unmatched(buffered)
            record.event_time = buffered.time
            record.out_key = buffered.key.encode()
            outputs.append(record)
        return outputs

    def _output(self, value: dict[str, Any], record: Record, match: Buffered) -> Record:
        """The output of a match; its source range names the record that made it."""
        out = Record(record.topic, record.partition, record.offset, None, None, None)
        out.value = value
        out.event_time = max(record.event_time, match.time)
        out.out_key = record.out_key
        return out
