"""An upgrade with records of the previous version still in the repartition topic.

The previous version wrote each keyed record as JSON with the event time and the source
record's position and bytes in headers. This version writes one MessagePack array; a
topology restarted on it reads the older records left in `<name>.repartition` and the new
ones alike, and its windows equal the oracle's over all the input.
"""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer

from streamline import headers as h
from streamline.kafka.connection import Connection
from tests.integration.test_windows import (
    OOO_MS,
    ORDER,
    Scenario,
)
from tests.support.windows_oracle import Event, events, order


def write_previous_format(kafka: Connection, topic: str, source: str, evts: list[Event]) -> None:
    """The keyed records as the previous version wrote them (and partitioned them)."""
    producer = Producer(kafka.config(**{"partitioner": "murmur2_random", "linger.ms": 20}))
    for offset, e in enumerate(evts):
        headers = [
            (h.EVENT_TIME, str(e.t).encode()),
            (h.ORIGINAL, ORDER.encode(order(e))),
            (h.SOURCE_TOPIC, source.encode()),
            (h.SOURCE_PARTITION, b"0"),
            (h.SOURCE_OFFSET, str(offset).encode()),
            (h.SOURCE_KEY, e.order_id.encode()),
        ]
        value = json.dumps(order(e), separators=(",", ":")).encode()
        producer.produce(topic, value=value, key=e.key.encode(), headers=headers)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_windows_over_the_previous_versions_repartition_records_and_new_ones(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling", repartition=True)
    evts = events(20_000, keys=200, step_ms=20, disorder_ms=OOO_MS - 1000)
    old, new = evts[:8000], evts[8000:]
    write_previous_format(kafka, scenario.topology.repartition_topic, scenario.source, old)
    scenario.produce(new)
    scenario.finish_exact(evts, 240, [scenario.process("a").start()])
