"""The benchmark's Kafka side: topics, the input producer, group offsets, reading outputs back."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection

LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}
KEEP = {"retention.ms": "-1"}


def create(connection: Connection, topics: dict[str, tuple[int, dict[str, str]]]) -> None:
    create_topics(connection, topics)


def delete_topics(connection: Connection, pattern: str) -> list[str]:
    """Deletes every topic whose name matches the regular expression; returns their names."""
    admin = AdminClient(connection.config(log_level=0))
    names = [t for t in admin.list_topics(timeout=10).topics if re.search(pattern, t)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):
                future.result(60)
    return names


def delete_groups(connection: Connection, pattern: str) -> None:
    admin = AdminClient(connection.config(log_level=0))
    try:
        groups = admin.list_consumer_groups(request_timeout=10).result()
    except KafkaException:
        return
    names = [g.group_id for g in groups.valid if re.search(pattern, g.group_id)]
    if names:
        for future in admin.delete_consumer_groups(names, request_timeout=30).values():
            with contextlib.suppress(KafkaException):
                future.result(30)


def produce_all(
    connection: Connection,
    topic: str,
    records: Iterable[tuple[int, bytes, bytes, int]],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Produces (partition, key, value, timestamp ms) records idempotently; returns the count."""
    producer = Producer(
        connection.config(
            **{
                "enable.idempotence": True,
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
            },
            log_level=0,
        )
    )
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    n = 0
    for partition, key, value, ts in records:
        while True:
            try:
                producer.produce(
                    topic, value, key, partition=partition, timestamp=ts, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
            if on_progress:
                on_progress(n)
    if producer.flush(120):
        raise RuntimeError(f"records to {topic} not delivered within 120 s")
    if errors:
        raise RuntimeError(f"{len(errors)} records to {topic} failed: {errors[0]}")
    return n


def end_offsets(connection: Connection, topic: str) -> dict[int, int]:
    consumer = Consumer(connection.config(**{"group.id": "bench-offsets"}, log_level=0))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        out = {}
        for p in metadata.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = high
        return out
    finally:
        consumer.close()


class GroupOffsets:
    """The committed offsets of a consumer group on one topic, polled through the admin API."""

    def __init__(self, connection: Connection, group: str, topic: str, partitions: int) -> None:
        self.admin = AdminClient(connection.config(log_level=0))
        self.group = group
        self.request = [
            ConsumerGroupTopicPartitions(
                group, [TopicPartition(topic, p) for p in range(partitions)]
            )
        ]

    def committed(self) -> dict[int, int]:
        try:
            futures = self.admin.list_consumer_group_offsets(self.request, request_timeout=5)
            result = futures[self.group].result(5)
        except KafkaException:
            return {}
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}

    def stable_members(self) -> int:
        """Members with partitions assigned, once the group is stable (0 otherwise)."""
        try:
            futures = self.admin.describe_consumer_groups([self.group], request_timeout=5)
            desc = futures[self.group].result(5)
        except KafkaException:
            return 0
        if str(desc.state).rsplit(".", 1)[-1] != "STABLE":
            return 0
        return sum(1 for m in desc.members if m.assignment and m.assignment.topic_partitions)


@dataclass
class OutputRecord:
    key: bytes | None
    value: bytes | None
    append_ms: int  # LogAppendTime, or the record's own timestamp
    seen_at: float  # wall clock when the read_committed consumer returned it


@dataclass
class OutputReader:
    """A read_committed consumer of whole topics from the beginning, in a thread or on demand."""

    connection: Connection
    topics: list[str]
    records: list[OutputRecord] = field(default_factory=list)
    log_append_time: bool = True

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.consumer = Consumer(
            self.connection.config(
                **{
                    "group.id": f"bench-reader-{time.time_ns()}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 10,
                    "enable.partition.eof": False,
                },
                log_level=0,
            )
        )
        assignment = []
        for topic in self.topics:
            metadata = self.consumer.list_topics(topic, timeout=10)
            for p in metadata.topics[topic].partitions:
                assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        self.consumer.assign(assignment)

    def poll(self, timeout: float = 0.1) -> int:
        # consume(n, timeout) waits for n messages or the timeout, which would add up to
        # `timeout` to the latency seen: wait for one message, then take what is queued
        first = self.consumer.poll(timeout)
        if first is None:
            return 0
        messages = [first, *self.consumer.consume(4999, 0)]
        now = time.time()
        for msg in messages:
            if msg.error():
                continue
            kind, ts = msg.timestamp()
            self.records.append(OutputRecord(msg.key(), msg.value(), ts if kind else 0, now))
            if kind != TIMESTAMP_LOG_APPEND_TIME:
                self.log_append_time = False
        return len(messages)

    def read_to_end(self, quiet_s: float = 2.0, limit_s: float = 300.0) -> None:
        """Reads until the committed end of every partition and then `quiet_s` without records."""
        deadline = time.monotonic() + limit_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll(0.2):
                last = time.monotonic()
            elif time.monotonic() - last >= quiet_s and self._at_end():
                return

    def _at_end(self) -> bool:
        for tp in self.consumer.assignment():
            _low, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            position = self.consumer.position([tp])[0].offset
            # past the end or at a transaction marker (which read_committed skips)
            if high > 0 and (position < 0 or position < high - 1):
                return False
        return True

    def start(self) -> OutputReader:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll(0.1)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def close(self) -> None:
        self.stop()
        self.consumer.close()
