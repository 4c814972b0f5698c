"""A partition written in transactions is caught up once only its commit marker is left.

Upstream of a repartition, a source partition counts as idle (so the last windows close)
only when this process has read all it holds. A topic written in one transaction ends
with a commit marker one past its last record: the partition must count as caught up
at its last record, or idle never comes and the last windows never close.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from streamline.kafka.connection import Connection
from streamline.runtime.health import caught_up
from streamline.runtime.offsets import Offsets


def test_a_partition_ending_in_a_commit_marker_is_caught_up_at_its_last_record(
    kafka: Connection, make_topic
) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("txn-input")
    producer = Producer(kafka.config(**{"transactional.id": f"{topic}-writer"}))
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"r{i}".encode(), partition=0)
    producer.commit_transaction(10)

    consumer = Consumer(
        kafka.config(
            **{
                "group.id": f"{topic}-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
    )
    tp = (topic, 0)
    offsets = Offsets()
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(seen) < 5 and time.monotonic() < deadline:
            seen += [m.offset() for m in consumer.consume(10, 0.5) if m.error() is None]
        assert seen == [0, 1, 2, 3, 4]
        offsets.positions[tp] = 5  # processed up to the last record; the marker is at 5
        deadline = time.monotonic() + 10
        while not caught_up(consumer, offsets, tp) and time.monotonic() < deadline:
            consumer.consume(10, 0.2)  # lets the fetcher read past the marker
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), cached=True)
        assert high == 6
        assert caught_up(consumer, offsets, tp)
    finally:
        consumer.close()


def test_a_partition_never_written_to_is_caught_up_before_anything_is_processed(
    kafka: Connection, make_topic
) -> None:  # type: ignore[no-untyped-def]
    """Upstream of a repartition, a source partition that got no record (a producer's sticky
    partitioner can leave one empty) must still go idle, or no window ever closes."""
    topic = make_topic("empty-input")
    consumer = Consumer(
        kafka.config(**{"group.id": f"{topic}-reader", "enable.auto.commit": False})
    )
    tp = (topic, 0)
    offsets = Offsets()  # nothing processed, nothing committed: no position
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + 10
        while not caught_up(consumer, offsets, tp) and time.monotonic() < deadline:
            consumer.consume(10, 0.2)  # a fetch tells the consumer the partition's offsets
        assert caught_up(consumer, offsets, tp)
    finally:
        consumer.close()
