"""W1-cf: W1 on the same input in the Confluent wire format, read through a real Schema Registry.

The input is the run's single-object input with each value's header swapped: the Avro body
of a single-object record and of a Confluent one are the same bytes, so `C3 01` + the
fingerprint becomes `00` + the id the Order schema got in the registry (the dev registry,
started for the run when none is running and a Java 21+ JDK is there). Same partitions,
keys and timestamps, so W1-cf's expected output is W1's, and the two cells compare the
cost of the format alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.cluster import KEEP, create, end_offsets, produce_all
from bench.workload import PARTITIONS
from streamline.kafka.connection import Connection
from streamline.kafka.registry import Registry
from streamline.serde import SchemaStore
from streamline.serde.codec import MAGIC
from streamline.serde.formats import subject_name

WORKLOAD = "W1-cf"


class RegistryForRun:
    """The Schema Registry of a benchmark run: the running dev registry, else one started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: Any = None
        self.url: str | None = None
        self.reason: str | None = None

    def __enter__(self) -> RegistryForRun:
        from streamline.dev.broker import free_port
        from streamline.dev.registry import DevRegistry, RegistryError, find_java21

        running = DevRegistry().info()
        if running is not None:
            self.url = running.url
            return self
        if find_java21() is None:
            self.reason = "no Java 21+ JDK for the dev Schema Registry"
            return self
        registry = DevRegistry(self.workdir / "registry")
        try:
            self.url = registry.start(free_port()).url
            self.started = registry
        except RegistryError as exc:
            self.reason = f"the dev Schema Registry did not start: {exc}"
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.started is not None:
            self.started.stop()


def _values(connection: Connection, topic: str) -> Iterator[tuple[int, bytes, bytes, int]]:
    ends = end_offsets(connection, topic)
    consumer = Consumer(
        connection.config(**{"group.id": "bench-copy", "enable.auto.commit": False}, log_level=0)
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    remaining = {p: end for p, end in ends.items() if end > 0}
    try:
        while remaining:
            for msg in consumer.consume(5000, timeout=1.0):
                if msg.error() is not None:
                    continue
                p, offset = cast(int, msg.partition()), cast(int, msg.offset())
                yield p, cast(bytes, msg.key()), cast(bytes, msg.value()), msg.timestamp()[1]
                if offset + 1 >= remaining.get(p, 0):
                    remaining.pop(p, None)
    finally:
        consumer.close()


def prepare_input(
    connection: Connection,
    store: SchemaStore,
    source: str,
    url: str,
    progress: Callable[[str], None],
) -> str:
    """Copies `source` as Confluent Avro to `<source>-cf`; returns that topic."""
    target = f"{source}-cf"
    schema = store.get("com.example.Order")
    schema_id = Registry({"url": url}).sink_schema_id(
        subject_name("topic", target, schema.name), schema, auto_register=True
    )
    single = MAGIC + schema.fingerprint
    confluent = b"\x00" + schema_id.to_bytes(4, "big")
    create(connection, {target: (PARTITIONS, KEEP)})

    def swapped() -> Iterator[tuple[int, bytes, bytes, int]]:
        for partition, key, value, ts in _values(connection, source):
            body = confluent + value[len(single) :] if value.startswith(single) else value
            yield partition, key, body, ts

    n = produce_all(connection, target, swapped())
    progress(f"copied {n:,} events to {target} as Confluent Avro (schema id {schema_id})")
    return target
