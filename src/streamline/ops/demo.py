"""`streamline demo`: the sample topology end to end on the local broker, results printed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from streamline.connection import Connection
from streamline.errors import StreamlineError
from streamline.ops.produce import produce
from streamline.ops.topics import create_topics, topology_topics
from streamline.runtime.processor import RunOptions
from streamline.runtime.runner import run_topology
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import CheckedTopology

DEMO_PARTITIONS = 3
DRAIN_TIMEOUT_S = 120.0


def end_offsets(connection: Connection, topic: str) -> dict[int, int]:
    """Partition -> offset after its last record."""
    consumer = Consumer(connection.config(**{"group.id": "streamline-demo-offsets"}, log_level=0))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()


def run_demo(
    connection: Connection,
    checked: CheckedTopology,
    store: SchemaStore,
    data: Path,
    state_dir: Path,
    report: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Produces `data`, runs the topology until its input is processed, returns the output records."""
    topology = checked.topology
    create_topics(connection, topology_topics(topology, DEMO_PARTITIONS))
    source = topology.source
    output_start = end_offsets(connection, topology.sink.topic)
    sent = produce(connection, source.topic, store, source.schema_name, data, key_field=None)
    report(f"produced {sent.sent} records from {data} to {source.topic}")
    input_end = end_offsets(connection, source.topic)

    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            options = RunOptions(instance_id="demo", state_dir=state_dir)
            run_topology(checked, store, connection, options, metrics_port=0, stop=stop)
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)
            stop.set()

    worker = threading.Thread(target=run, name="streamline-demo", daemon=True)
    worker.start()
    try:
        _await_drained(connection, topology.group_id, source.topic, input_end, stop)
    finally:
        stop.set()
        worker.join(60)
    if failure:
        raise failure[0]
    report(f"ran {topology.name}@{topology.version}; input fully processed")
    codec = AvroCodec(store, checked.sink_schema)
    return [codec.decode(m.value()) for m in read_range(connection, topology.sink.topic, output_start)]


def read_range(connection: Connection, topic: str, start: dict[int, int]) -> list[Message]:
    """Committed records of `topic` from `start` until nothing new arrives for a moment."""
    consumer = Consumer(connection.config(**{
        "group.id": "streamline-demo-reader", "isolation.level": "read_committed",
        "enable.auto.commit": False}, log_level=0))
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
    records: list[Message] = []
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < 1.5:
            batch = [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
            if batch:
                records.extend(batch)
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return records


def _await_drained(connection: Connection, group: str, topic: str, end: dict[int, int],
                   stop: threading.Event) -> None:
    """Waits until the group's committed offsets reach `end` on every partition."""
    consumer = Consumer(connection.config(**{"group.id": group, "enable.auto.commit": False}, log_level=0))
    try:
        partitions = [TopicPartition(topic, p) for p in end]
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and not stop.is_set():
            committed = consumer.committed(partitions, timeout=10)
            if all(tp.offset >= end[tp.partition] for tp in committed):
                return
            time.sleep(0.3)
        if not stop.is_set():
            raise StreamlineError(f"the demo did not process its input within {DRAIN_TIMEOUT_S:.0f}s")
    finally:
        consumer.close()
