"""`streamline lag`: how far a topology's consumer group is behind, per source partition.

Lag is `end offset - committed offset`, the same computation as the runtime's
`streamline_consumer_lag` gauge and Kafka's `kafka-consumer-groups --describe`, except
that a partition whose committed offset is followed by transaction markers only (the
commit marker after the last record of a topic written in transactions, records of
aborted transactions) has lag 0: a read_committed read from the committed offset finds no
record. A partition the group has not committed has no lag (`-`, as Kafka's tool shows
it), and the total counts only the partitions that have one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamline.kafka.admin import committed_offsets, require_topics
from streamline.kafka.connection import Connection
from streamline.kafka.scan import holds_a_record, scan_consumer
from streamline.topology import Topology
from streamline.topology.resources import HEARTBEATS_TOPIC, resources_of


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    watermark: int | None = None
    status: str | None = None
    markers_only: bool = False
    """Between committed and end: transaction markers (and aborted records) only."""

    @property
    def lag(self) -> int | None:
        """End minus committed (0 when only transaction markers are left); None (shown `-`,
        as Kafka's tool shows it) before a commit."""
        if self.committed is None:
            return None
        return 0 if self.markers_only else self.end - self.committed


def topology_lag(connection: Connection, topology: Topology) -> list[PartitionLag]:
    """Committed offset, end offset and lag of every partition the topology consumes.

    A table's partitions come after the sources: their offset is how far the instance
    holding them has read the table's topic (published in `<group>.tables`).
    """
    resources = resources_of(topology)
    topics = [s.topic for s in topology.sources]
    tables = list(resources.table_topics)
    counts = require_topics(connection, [*topics, *tables])
    partitions = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
    table_partitions = [TopicPartition(t, p) for t in tables for p in range(counts[t])]
    committed = {
        key: tp.offset
        for key, tp in committed_offsets(connection, topology.group_id, partitions).items()
    }
    if table_partitions:
        read = committed_offsets(connection, resources.tables_group, table_partitions)
        committed.update({key: tp.offset for key, tp in read.items()})
        partitions += table_partitions
    group = resources.side_group("lag")  # reads end offsets; commits nothing
    consumer = Consumer(connection.config(**{"group.id": group}, log_level=0))
    probe = scan_consumer(connection, group)
    try:
        out = []
        beats = last_heartbeats(consumer, topology.name)
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=15)
            offset = committed.get((tp.topic, tp.partition), -1)
            beat = beats.get((tp.topic, tp.partition), {})
            key = (tp.topic, tp.partition)
            out.append(
                PartitionLag(
                    tp.topic,
                    tp.partition,
                    offset if offset >= 0 else None,
                    high,
                    beat.get("watermark"),
                    beat.get("status"),
                    # below the log start the records were deleted unread: end - committed, no probe
                    0 <= low <= offset < high and not holds_a_record(probe, key, offset, high),
                )
            )
        return out
    finally:
        consumer.close()
        probe.close()


def last_heartbeats(
    consumer: Consumer, topology: str, scan: int = 5000
) -> dict[tuple[str, int], dict[str, Any]]:
    """The newest heartbeat entry of each partition of `topology` among the last `scan` heartbeats."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    metadata = consumer.list_topics(HEARTBEATS_TOPIC, timeout=15).topics.get(HEARTBEATS_TOPIC)
    if metadata is None or metadata.error is not None:
        return found
    assignment = []
    ends = {}
    for p in metadata.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(HEARTBEATS_TOPIC, p), timeout=15)
        if high > low:
            assignment.append(TopicPartition(HEARTBEATS_TOPIC, p, max(low, high - scan)))
            ends[p] = high
    if not assignment:
        return found
    consumer.assign(assignment)
    remaining = set(ends)
    deadline = time.monotonic() + 10
    while remaining and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=0.5):
            if msg.error() is not None:
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if offset >= ends[partition] - 1:
                remaining.discard(partition)
            if msg.key() != topology.encode():
                continue
            try:
                document = json.loads(msg.value() or b"")
            except ValueError:
                continue
            for entry in document.get("partitions", []):
                found[(entry["topic"], entry["partition"])] = entry
    consumer.unassign()
    return found
