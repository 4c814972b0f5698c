"""Health and freshness: is the loop alive and ready, how far behind is it, how fresh its output.

`Liveness` answers /healthz and /readyz. `Heartbeats` publishes this instance's
freshness to the heartbeats topic (outside transactions) with the matching gauges, and
the consumer lag per partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamline.kafka.connection import Connection
from streamline.observability.heartbeats import (
    HEARTBEATS_TOPIC,
    PartitionFreshness,
    heartbeat,
    partition_freshness,
)
from streamline.observability.metrics import Metrics
from streamline.runtime.offsets import Offsets
from streamline.runtime.operators import OperatorStore
from streamline.runtime.windowed import SourceWatermarks
from streamline.topology.model import Sink, Topology

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]


class Liveness:
    """Whether the loop runs and makes progress (/healthz), and whether it is ready (/readyz).

    Progress is a step of the loop, a record through a map (user code may be slow), a
    chunk of a restore or a retried commit; a loop stuck in user code or a hung call
    shows none, and a liveness probe then restarts the process.
    """

    def __init__(
        self, stall_timeout_s: float, maps_progressed: Callable[[], Iterable[float]]
    ) -> None:
        self._timeout = stall_timeout_s
        self._maps_progressed = maps_progressed
        self._progress_at = time.monotonic()
        self._stall_reported = False
        self.alive = False
        self.joined = False
        """The group has assigned partitions to this instance at least once."""
        self.restoring = False

    def progressed(self) -> None:
        self._progress_at = time.monotonic()

    @property
    def ready(self) -> bool:
        """Running, with the state of every assigned partition restored."""
        return self.alive and self.joined and not self.restoring

    def healthy(self) -> bool:
        """Whether the loop runs and has made progress within the stall timeout."""
        if not self.alive:
            return False
        if self._timeout <= 0:
            return True
        last = max([self._progress_at, *self._maps_progressed()])
        stalled = time.monotonic() - last
        if stalled < self._timeout:
            self._stall_reported = False
            return True
        if not self._stall_reported:  # said once per stall, from the probe's thread
            self._stall_reported = True
            log.error(
                "no progress for %.0f s (stall timeout %.0f s): the processing loop is stuck, "
                "/healthz answers 503",
                stalled,
                self._timeout,
            )
        return False


def caught_up(consumer: Consumer, offsets: Offsets, tp: TP) -> bool:
    """Whether this process has read everything the partition holds (no backlog).

    A partition written in transactions ends with a commit marker after its last record:
    the end offset is one past the marker, and what this process has processed reaches
    only the last record. The consumer's own position moves past the control records it
    fetched, so it says whether only a marker is left. Asked between batches, when every
    record the consumer handed over is processed. A partition that holds nothing (never
    written to, or emptied by retention) is caught up before anything was processed.
    """
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
    except KafkaException:
        return False
    if high < 0:
        return False
    if high == 0 or low == high:
        return True
    position = offsets.position(tp)
    if position is None:
        return False
    if position >= high:
        return True
    try:
        fetched = consumer.position([TopicPartition(*tp)])[0].offset
    except KafkaException:
        return False
    return fetched >= high


def export_freshness(metrics: Metrics, state: PartitionFreshness, wall_ms: int) -> None:
    """The freshness gauges of one partition: `watermark_lag_seconds` is wall-clock time
    minus the watermark (the heartbeat's `staleness_ms`, which the SLA status judges);
    `staleness_seconds` is wall-clock time minus the newest event time seen, smaller by up
    to `max_out_of_orderness` (how old the freshest record is)."""
    topic, partition, gauges = state.topic, state.partition, metrics.partitions
    if state.watermark is not None:
        gauges.set_watermark(topic, partition, state.watermark)
        gauges.set_watermark_lag(topic, partition, (wall_ms - state.watermark) / 1000)
    if state.last_event_time is not None:
        gauges.set_staleness(topic, partition, (wall_ms - state.last_event_time) / 1000)
    gauges.set_sla_status(topic, partition, state.status)


class Heartbeats:
    """Freshness per source partition (heartbeats and gauges), state sizes and lag."""

    def __init__(
        self,
        topology: Topology,
        instance_id: str,
        connection: Connection,
        consumer: Consumer,
        offsets: Offsets,
        source_watermarks: SourceWatermarks,
        stores: Callable[[], Iterable[tuple[int, OperatorStore]]],
        metrics: Metrics,
        fingerprint: str | None = None,  # the run fingerprint; else the definition's
    ) -> None:
        self._topology = topology
        self._fingerprint = fingerprint or topology.fingerprint
        self._instance_id = instance_id
        self._connection = connection
        self._consumer = consumer
        self._offsets = offsets
        self._watermarks = source_watermarks
        self._stores = stores
        self._metrics = metrics
        self._interval_s = topology.freshness.heartbeat_interval / 1000
        self._at = 0.0
        self._producer: Producer | None = None  # made at the first heartbeat sent
        self._details: dict[str, object] = {
            "sla": {
                "max_staleness": topology.freshness.max_staleness,
                "breach_after": topology.freshness.breach_after,
                "heartbeat_interval": topology.freshness.heartbeat_interval,
            },
            "topics": {
                "sources": [s.topic for s in topology.sources],
                "sink": topology.sink.topic if topology.sink is not None else None,
                "sinks": [s.topic for s in topology.outputs.values() if isinstance(s, Sink)],
                "dead_letters": topology.dead_letter_topic,
            },
        }
        self.enabled = HEARTBEATS_TOPIC in consumer.list_topics(timeout=30).topics
        if not self.enabled:
            log.warning(
                "heartbeats are off: topic %s does not exist (streamline topics create "
                "TOPOLOGY creates it)",
                HEARTBEATS_TOPIC,
            )

    def due(self) -> bool:
        return time.monotonic() - self._at >= self._interval_s

    def beat(self) -> None:
        """Publishes this instance's freshness (outside transactions) and the matching gauges."""
        self._at = time.monotonic()
        topology = self._topology
        freshness = topology.freshness
        metrics = self._metrics
        wall_ms = int(time.time() * 1000)
        partitions = []
        for topic, partition in sorted(self._watermarks.trackers):
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                high = -1
            fresh = self._watermarks.freshness((topic, partition))
            state = partition_freshness(
                topic,
                partition,
                fresh[0] if fresh else None,
                fresh[1] if fresh else None,
                self._offsets.committed.get((topic, partition)),
                high,
                wall_ms,
                freshness.max_staleness,
                freshness.breach_after,
            )
            partitions.append(state)
            export_freshness(metrics, state, wall_ms)
        for partition, bound in self._stores():
            metrics.stores.set_state_keys(bound.spec.name, partition, bound.store.approx_keys())
        if not self.enabled:
            return
        if self._producer is None:
            self._producer = Producer(self._connection.config(log_level=3), logger=log)
        self._details["ready"] = metrics.is_ready
        self._details["last_commit"] = self._offsets.committed_at_ms
        document = heartbeat(
            topology.name,
            topology.version,
            self._fingerprint,
            self._instance_id,
            wall_ms,
            partitions,
            self._details,
        )
        try:
            self._producer.produce(HEARTBEATS_TOPIC, key=topology.name.encode(), value=document)
            self._producer.poll(0)
        except (BufferError, KafkaException) as exc:
            log.warning("heartbeat not sent: %s", exc)

    def update_lag(self) -> None:
        """Consumer lag of every assigned partition: its end offset minus the committed one."""
        committed = self._offsets.committed
        for topic, partition in self._offsets.assignment:
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high < 0:
                continue
            position = committed.get((topic, partition))
            if position is None:
                continue
            self._metrics.partitions.set_lag(topic, partition, max(0, high - position))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
