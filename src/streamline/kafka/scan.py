"""Reading a topic's records of a time range, every partition, up to the end it had when asked."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection

IDLE_TIMEOUT_S = 30.0


def scan_consumer(
    connection: Connection, group: str, isolation: str = "read_committed"
) -> Consumer:
    """A consumer that commits nothing, with small fetch buffers (records are streamed)."""
    return Consumer(
        connection.config(
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "enable.partition.eof": True,
                "queued.max.messages.kbytes": 16384,
                "fetch.max.bytes": 8 * 1024 * 1024,
                "max.partition.fetch.bytes": 2 * 1024 * 1024,
                "fetch.wait.max.ms": 20,  # the end of a partition shows at once
            },
            log_level=0,
        )
    )


def holds_a_record(
    probe: Consumer,
    tp: tuple[str, int],
    start: int,
    end: int,
    clock: Callable[[], float] = time.monotonic,
    wait_s: float = 10.0,
) -> bool:
    """Whether offsets [start, end) of `tp` hold a record a read_committed consumer is given.

    A partition written in transactions ends with a commit marker after its last record
    (and an aborted transaction leaves records no read_committed consumer gets): a group
    that has processed everything commits its last record + 1, one short of the end
    offset. A read_committed read from `start` that reaches the end without a record shows
    that nothing is left. `probe` is a read_committed consumer with `enable.partition.eof`
    (`scan_consumer`); not known within `wait_s`: True.
    """
    probe.assign([TopicPartition(tp[0], tp[1], start)])
    try:
        deadline = clock() + wait_s
        while clock() < deadline:
            message = probe.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                return (message.offset() or 0) < end
        return True
    finally:
        probe.unassign()


def topic_exists(consumer: Consumer, topic: str) -> bool:
    metadata = consumer.list_topics(topic, timeout=15).topics.get(topic)
    return metadata is not None and metadata.error is None


def scan_since(consumer: Consumer, topic: str, since_ms: int) -> Iterator[Message]:
    """Every record of `topic` with a timestamp at or after `since_ms` (0: all), partition by
    partition, up to each partition's end offset when the scan reaches it; nothing when the
    topic does not exist. Memory holds one fetch, not the topic."""
    if not topic_exists(consumer, topic):
        return
    partitions = sorted(consumer.list_topics(topic, timeout=15).topics[topic].partitions)
    starts = consumer.offsets_for_times(
        [TopicPartition(topic, p, max(since_ms, 0)) for p in partitions], timeout=15
    )
    for start in starts:
        if start.offset < 0:  # no record at or after that time
            continue
        yield from _read_to_end(consumer, topic, start.partition, start.offset)


def _read_to_end(consumer: Consumer, topic: str, partition: int, first: int) -> Iterator[Message]:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
    start = max(first, low)
    if start >= high:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    try:
        while True:
            messages = consumer.consume(5000, timeout=0.1)
            if not messages and time.monotonic() > deadline:
                raise StreamlineError(
                    f"could not read {topic}/{partition} up to {high} within {IDLE_TIMEOUT_S:.0f}s"
                )
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise StreamlineError(f"reading {topic}/{partition}: {error.str()}")
                deadline = time.monotonic() + IDLE_TIMEOUT_S
                offset = cast(int, msg.offset())
                if offset >= high:
                    return
                yield msg
                if offset + 1 >= high:
                    return
    finally:
        consumer.unassign()
