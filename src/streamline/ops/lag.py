"""`streamline lag`: how far a topology's consumer group is behind, per source partition.

Lag is `end offset - committed offset`, the same computation as the runtime's
`streamline_consumer_lag` gauge and Kafka's `kafka-consumer-groups --describe`.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streamline.connection import Connection
from streamline.ops.topics import require_topics
from streamline.topology import Topology


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None else 0)


def topology_lag(connection: Connection, topology: Topology) -> list[PartitionLag]:
    """Committed offset, end offset and lag of every partition the topology consumes."""
    topics = [s.topic for s in topology.sources]
    counts = require_topics(connection, topics)
    partitions = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
    admin = AdminClient(connection.config(log_level=0))
    request = [ConsumerGroupTopicPartitions(topology.group_id, partitions)]
    result = admin.list_consumer_group_offsets(request, request_timeout=15)[topology.group_id].result(15)
    committed = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}
    consumer = Consumer(connection.config(**{"group.id": f"{topology.group_id}.lag"}, log_level=0))
    try:
        out = []
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=15)
            offset = committed.get((tp.topic, tp.partition), -1)
            out.append(PartitionLag(tp.topic, tp.partition, offset if offset >= 0 else None, high))
        return out
    finally:
        consumer.close()
