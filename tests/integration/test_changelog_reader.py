"""Restores of several changelog partitions through one shared consumer read exactly their own records."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import ChangelogReader, restore_consumer

pytestmark = pytest.mark.kafka


def test_one_consumer_restores_partition_after_partition(kafka: Connection, unique: str) -> None:
    topic = f"changelog-{unique}"
    create_topics(kafka, {topic: (3, {})})
    producer = Producer(kafka.config())
    written: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(3)}
    for p in range(3):
        for i in range(7000 if p == 0 else 50 * p):  # partition 0: more than one chunk
            key, value = f"k{p}-{i % 300}".encode(), (None if i % 11 == 0 else f"{i}".encode())
            producer.produce(topic, key=key, value=value, partition=p)
            written[p].append((key, value))
    assert producer.flush(30) == 0

    consumer = restore_consumer(kafka)
    try:
        for p, start in ((0, 0), (1, 20), (2, 100), (0, 6990), (1, 50)):
            reader = ChangelogReader(kafka, topic, p, consumer)
            high = reader.high_watermark()
            assert high == len(written[p])
            read = [pair for chunk in reader.read(start) for pair in chunk]
            assert read == written[p][start:], (p, start)
            assert reader.end == max(start, high)
    finally:
        consumer.close()
