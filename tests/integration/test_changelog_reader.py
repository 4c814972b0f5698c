"""Restores of changelog partitions: several through one shared pair of consumers read exactly
their own records, and a transaction left open below the end holds a replay back until it ends."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import ChangelogReader, restore_clients

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

    clients = restore_clients(kafka)
    try:
        for p, start in ((0, 0), (1, 20), (2, 100), (0, 6990), (1, 50)):
            reader = ChangelogReader(kafka, topic, p, clients)
            high = reader.high_watermark()
            assert high == len(written[p])
            read = [pair for chunk in reader.read(start) for pair in chunk]
            assert read == written[p][start:], (p, start)
            assert reader.end == max(start, high)
    finally:
        clients.close()


def test_a_transaction_left_open_holds_the_replay_until_it_ends(
    kafka: Connection, unique: str
) -> None:
    """An instance killed in the middle of a commit leaves its changelog records in an open
    transaction; the partition's next owner commits records after them. A replay that
    stopped at the last stable offset would miss those: it waits for the open
    transaction to end, saying what it waits for, and reads past it (its records, aborted,
    are not read)."""
    topic = f"changelog-{unique}"
    create_topics(kafka, {topic: (1, {})})

    def transactional(name: str) -> Producer:
        producer = Producer(kafka.config(**{"transactional.id": f"{unique}-{name}"}))
        producer.init_transactions(30)
        producer.begin_transaction()
        return producer

    before = transactional("before")
    for i in range(3):
        before.produce(topic, key=f"k{i}".encode(), value=b"first", partition=0)
    before.commit_transaction(30)
    lost = transactional("lost")
    lost.produce(topic, key=b"k0", value=b"never committed", partition=0)
    assert lost.flush(30) == 0
    after = transactional("after")
    for i in range(3):
        after.produce(topic, key=f"k{i}".encode(), value=b"second", partition=0)
    after.produce(topic, key=b"k1", value=None, partition=0)
    after.commit_transaction(30)

    clients = restore_clients(kafka)
    try:
        reader = ChangelogReader(kafka, topic, 0, clients)
        high = reader.high_watermark()
        read: list[tuple[bytes, bytes | None]] = []
        waited: list[int | None] = []
        aborted_at = 0.0
        for chunk in reader.read(0):
            read += chunk
            if not chunk:
                waited.append(reader.waiting_below)
                if len(waited) == 5:  # the lost instance's transaction ends now
                    lost.abort_transaction(30)
                    aborted_at = time.monotonic()
        assert aborted_at > 0, "the replay did not wait for the open transaction"
        assert set(waited) == {high}
        assert read == [
            (b"k0", b"first"), (b"k1", b"first"), (b"k2", b"first"),
            (b"k0", b"second"), (b"k1", b"second"), (b"k2", b"second"), (b"k1", None),
        ]  # fmt: skip
        assert reader.end >= high
        assert reader.waiting_below is None
    finally:
        clients.close()
