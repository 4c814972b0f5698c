"""An instance killed in the middle of a commit leaves its transaction open on the broker:
fencing its transactional id aborts it at once, so the instance taking its partitions
over reads their committed offsets, and read_committed readers get past it, without
waiting for the transaction timeout (runtime/fencing.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streamline.kafka.connection import Connection
from streamline.runtime.collector import RecordCollector
from streamline.runtime.commit import fenced
from streamline.runtime.fencing import LostMembers
from streamline.runtime.producers import TransactionalProducers

pytestmark = [pytest.mark.kafka]

KILLED_WHILE_COMMITTING = """
import os, sys
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, topic, group, transactional_id = sys.argv[1:]
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                     "transaction.timeout.ms": 60000})
producer.init_transactions(30)
producer.begin_transaction()
producer.produce(topic, b"uncommitted")
producer.flush(30)
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
producer.send_offsets_to_transaction(
    [TopicPartition(topic, 0, 1)], consumer.consumer_group_metadata(), 30)
os._exit(0)  # killed before commit_transaction: the offsets are pending
"""


def test_fencing_a_lost_instance_aborts_its_open_transaction_at_once(
    kafka: Connection, make_topic, unique: str, tmp_path: Path
) -> None:
    topic = make_topic("fenced")
    group, name = f"fenced-{unique}", f"fenced-{unique}"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WHILE_COMMITTING)
    subprocess.run(
        [sys.executable, str(script), kafka.bootstrap_servers, topic, group, f"{name}-b"],
        check=True,
        timeout=60,
    )
    lost = LostMembers(kafka, group, topic, "a", lambda instance: f"{name}-{instance}")
    started = time.monotonic()
    assert lost.fence("b")
    consumer = Consumer(
        kafka.config(
            **{
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
    )
    try:
        # the pending offsets were aborted with the transaction: none committed, at once
        (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=20)
        assert committed.offset < 0
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while True:  # a read_committed reader reaches the end: the aborted record is skipped
            msg = consumer.poll(0.5)
            assert time.monotonic() < deadline, "the open transaction still holds readers"
            if msg is None:
                continue
            assert msg.error() is not None, f"read an aborted record: {msg.value()!r}"
            if msg.error().code() == KafkaError._PARTITION_EOF:
                break
    finally:
        consumer.close()
    assert time.monotonic() - started < 15  # the transaction timeout is 60 s


def test_a_producer_fenced_at_its_commit_leaves_the_error_that_stops_the_run_alone(
    kafka: Connection, make_topic, unique: str
) -> None:
    """Fenced at `commit_transaction` (frozen in the middle of a commit, fenced meanwhile),
    a producer raises "Failed to end transaction" again from its next flush: the run's final
    flush must not replace the `ProducerFenced` line with that raw Kafka error."""
    topic = make_topic("fenced-commit")
    transactional_id = f"fenced-commit-{unique}"

    def new_producer(on_delivery: Any) -> Producer:
        conf = {"transactional.id": transactional_id, "on_delivery": on_delivery}
        return Producer(kafka.config(**conf, log_level=0))

    collector = RecordCollector(new_producer, lambda _err, _topic: None)
    collector.producer.init_transactions(30)
    collector.producer.begin_transaction()
    collector.produce(topic, b"k", b"uncommitted", None)
    assert collector.flush(30) == 0
    Producer(kafka.config(**{"transactional.id": transactional_id})).init_transactions(30)
    with pytest.raises(KafkaException) as failed:
        collector.producer.commit_transaction(30)
    assert fenced(failed.value.args[0])
    # the producer's next flush serves the fatal error again, raising it: the run's last flush
    options = SimpleNamespace(instance_id="a", transaction_timeout_ms=30000)
    TransactionalProducers(None, kafka, options).flush(collector, 1)  # type: ignore[arg-type]
