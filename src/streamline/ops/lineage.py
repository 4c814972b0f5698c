"""`streamline lineage trace`: which inputs formed a record, followed upstream across topologies.

A record's own `streamline.source` header names the input offsets that formed it
(for a window: its first to last contributing record). Further up, each lineage event
on `streamline.lineage` maps the output offset ranges of one committed transaction to
its input ranges, so a range of one topic is followed to the transactions that wrote it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamline.errors import StreamlineError
from streamline.headers import SOURCE
from streamline.kafka.connection import Connection
from streamline.observability.lineage import LINEAGE_TOPIC, ranges_of

Range = tuple[str, int, int, int]  # topic, partition, first, last


@dataclass
class LineageEvent:
    job: str
    version: str
    fingerprint: str
    inputs: dict[tuple[str, int], tuple[int, int]]
    outputs: dict[tuple[str, int], tuple[int, int]]


@dataclass
class TraceStep:
    """One level of a trace: the ranges found and the topologies (jobs) that link them."""

    depth: int
    ranges: list[Range]
    jobs: set[str] = field(default_factory=set)


def _consumer(connection: Connection) -> Consumer:
    return Consumer(
        connection.config(
            **{
                "group.id": "streamline-lineage-trace",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
            log_level=0,
        )
    )


def read_events(connection: Connection, timeout: float = 60) -> list[LineageEvent]:
    """Every committed lineage event."""
    consumer = _consumer(connection)
    try:
        metadata = consumer.list_topics(LINEAGE_TOPIC, timeout=15).topics.get(LINEAGE_TOPIC)
        if metadata is None or metadata.error is not None:
            raise StreamlineError(f"topic {LINEAGE_TOPIC} does not exist: no lineage was recorded")
        partitions = list(metadata.partitions)
        consumer.assign([TopicPartition(LINEAGE_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        events: list[LineageEvent] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition() or 0)
                    continue
                events.append(_event(json.loads(msg.value() or b"{}")))
        return events
    finally:
        consumer.close()


def _event(document: dict[str, Any]) -> LineageEvent:
    facet = document["job"].get("facets", {}).get("streamline_topology", {})
    return LineageEvent(
        document["job"]["name"],
        facet.get("version", ""),
        facet.get("fingerprint", ""),
        ranges_of(document.get("inputs", [])),
        ranges_of(document.get("outputs", [])),
    )


def record_headers(
    connection: Connection, topic: str, partition: int, offset: int
) -> dict[str, bytes]:
    """Headers of one committed record; a clear error when there is none at that offset."""
    consumer = _consumer(connection)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for msg in consumer.consume(10, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        raise StreamlineError(
                            f"no committed record at {topic}/{partition}/{offset}"
                        )
                    continue
                if msg.offset() != offset:
                    raise StreamlineError(f"no committed record at {topic}/{partition}/{offset}")
                return {k: v for k, v in cast(list[tuple[str, bytes]], msg.headers() or [])}
        raise StreamlineError(f"could not read {topic}/{partition}/{offset} within 15s")
    finally:
        consumer.close()


def parse_source_header(value: bytes) -> Range:
    """`topic/partition/first-last` -> (topic, partition, first, last)."""
    topic, partition, span = value.decode().rsplit("/", 2)
    first, last = span.split("-")
    return topic, int(partition), int(first), int(last)


def trace(
    connection: Connection,
    topic: str,
    partition: int,
    offset: int,
    depth: int = 1,
    events: list[LineageEvent] | None = None,
) -> list[TraceStep]:
    """The input ranges of the record at `topic/partition/offset`, `depth` levels upstream."""
    events = events if events is not None else read_events(connection)
    headers = record_headers(connection, topic, partition, offset)
    producers = _covering(events, topic, partition, offset, offset)
    if SOURCE in headers:
        first = [parse_source_header(headers[SOURCE])]
    else:
        if not producers:
            raise StreamlineError(f"no lineage event covers {topic}/{partition}/{offset}")
        first = _inputs(producers)
    steps = [TraceStep(1, first, {e.job for e in producers})]
    while len(steps) < depth:
        upstream = [e for r in steps[-1].ranges for e in _covering(events, *r)]
        if not upstream:
            break
        steps.append(TraceStep(len(steps) + 1, _inputs(upstream), {e.job for e in upstream}))
    return steps


def _covering(
    events: list[LineageEvent], topic: str, partition: int, first: int, last: int
) -> list[LineageEvent]:
    """The events whose outputs overlap `topic/partition/first..last`."""
    out = []
    for event in events:
        span = event.outputs.get((topic, partition))
        if span is not None and span[0] <= last and first <= span[1]:
            out.append(event)
    return out


def _inputs(events: list[LineageEvent]) -> list[Range]:
    merged: dict[tuple[str, int], list[int]] = {}
    for event in events:
        for (topic, partition), (first, last) in event.inputs.items():
            span = merged.setdefault((topic, partition), [first, last])
            span[0] = min(span[0], first)
            span[1] = max(span[1], last)
    return [(t, p, a, b) for (t, p), (a, b) in sorted(merged.items())]
