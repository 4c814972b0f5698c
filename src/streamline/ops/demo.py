"""`streamline demo`: the sample topology end to end on the local broker; returns its output records."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from streamline.errors import StreamlineError, UsageError
from streamline.kafka.admin import create_topics, end_offsets
from streamline.kafka.connection import Connection
from streamline.ops.produce import produce
from streamline.ops.topics import topology_topics
from streamline.runtime.processor import RunOptions
from streamline.runtime.runner import run_topology
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import CheckedTopology

DEMO_PARTITIONS = 3
DRAIN_TIMEOUT_S = 120.0
OFFSETS_GROUP = "streamline-demo-offsets"


def _rebase_event_times(data: Path, field: str, folder: Path, latest_output: int = 0) -> Path:
    """A copy of the sample moved to start now, after every earlier demo run's events.

    Windows that closed in an earlier run stay closed, so replaying the same sample
    unchanged would only produce late records; moved forward, every run is on time.
    Earlier runs are known from this folder's note and from the newest window the sink
    holds (`latest_output`: another checkout's demo may have run on the same broker).
    """
    records = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    folder.mkdir(parents=True, exist_ok=True)
    last_file = folder / "last-event-time"
    try:
        previous = int(last_file.read_text())
    except (OSError, ValueError):
        previous = 0
    previous = max(previous, latest_output)
    first = min(int(r[field]) for r in records)
    start = max(int(time.time() * 1000), previous + 60_000)
    shift = start - start % 60_000 - first + first % 60_000  # keep the sample's minute alignment
    moved = [{**r, field: int(r[field]) + shift} for r in records]
    out = folder / data.name
    out.write_text("".join(json.dumps(r) + "\n" for r in moved))
    last_file.write_text(str(max(r[field] for r in moved)))
    return out


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
    if topology.sink is None:
        raise UsageError(f"the demo reads one sink topic; {topology.name} writes files only")
    sink_topic = topology.sink.topic
    output_start = end_offsets(connection, sink_topic, OFFSETS_GROUP)
    codec = AvroCodec(store, checked.sink_schema)
    tail = {p: max(0, end - 20) for p, end in output_start.items()}
    latest = [
        codec.decode(m.value()).get("window_end") for m in read_range(connection, sink_topic, tail)
    ]
    latest_output = max((int(t) for t in latest if isinstance(t, int)), default=0)
    rebased = _rebase_event_times(data, source.event_time, state_dir, latest_output)
    sent = produce(connection, source.topic, store, source.schema_name, rebased, key_field=None)
    report(
        f"produced {sent.sent} records from {data} to {source.topic} (event times moved to start now)"
    )
    if sent.run is not None:
        # after the last record of each partition written to, not after the commit marker
        # that ends the produce's transaction (the topology commits up to its last record)
        input_end = {int(p): last + 1 for p, (_first, last) in sent.run.offsets.items()}
    else:
        input_end = end_offsets(connection, source.topic, OFFSETS_GROUP)

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
        if topology.window is not None:
            # the last windows close once every source partition has been idle for idle_timeout
            report(
                f"input processed; waiting {source.watermark.idle_timeout / 1000:.0f}s of "
                "idleness for the last windows to close"
            )
            stop.wait(source.watermark.idle_timeout / 1000 + 3)
            # on a busy machine the windows may close later: wait for their first outputs
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while not stop.is_set() and time.monotonic() < deadline:
                if sum(end_offsets(connection, sink_topic, OFFSETS_GROUP).values()) > sum(
                    output_start.values()
                ):
                    break
                stop.wait(0.5)
            else:
                if not stop.is_set():
                    report(
                        f"no window of {topology.name} closed within {DRAIN_TIMEOUT_S:.0f}s; "
                        f"late records, if any, are in {topology.late_topic}"
                    )
    finally:
        stop.set()
        worker.join(60)
    if failure:
        raise failure[0]
    lag = sum(input_end.values()) - sum(
        _committed(connection, topology.group_id, source.topic, input_end).values()
    )
    report(f"ran {topology.name}@{topology.version}; consumer lag on {source.topic}: {lag}")
    return [codec.decode(m.value()) for m in read_range(connection, sink_topic, output_start)]


def read_range(connection: Connection, topic: str, start: dict[int, int]) -> list[Message]:
    """Committed records of `topic` from `start` until nothing new arrives for a moment."""
    consumer = Consumer(
        connection.config(
            **{
                "group.id": "streamline-demo-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            },
            log_level=0,
        )
    )
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


def _committed(
    connection: Connection, group: str, topic: str, end: dict[int, int]
) -> dict[int, int]:
    consumer = Consumer(
        connection.config(**{"group.id": group, "enable.auto.commit": False}, log_level=0)
    )
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in end], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in committed}
    finally:
        consumer.close()


def _await_drained(
    connection: Connection, group: str, topic: str, end: dict[int, int], stop: threading.Event
) -> None:
    """Waits until the group's committed offsets reach `end` on every partition."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        committed = _committed(connection, group, topic, end)
        if all(committed[p] >= end[p] for p in end):
            return
        time.sleep(0.3)
    if not stop.is_set():
        raise StreamlineError(f"the demo did not process its input within {DRAIN_TIMEOUT_S:.0f}s")
