"""A windowed topology whose map retries through the retry topic counts each record once, in its window.

The keys' source partitions are not where the client's default partitioner would put them
(as with producers that hash keys differently, e.g. Java's murmur2), so a retried record
only finds its window state if it comes back to its source partition's task.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.support.harness import SCHEMAS, StreamlineProcess, await_started, process_env
from tests.support.maps import RATES

pytestmark = pytest.mark.slow

PARTITIONS = 3
HOUR = 3_600_000
BASE_T = 1_767_225_600_000  # an hour boundary
KEYS = [f"c-{i}" for i in range(6)]
FLAKY = (3, 7)  # per key, the orders whose map fails twice before it succeeds

TOPOLOGY = """\
apiVersion: streamline/v1
name: winretry-{unique}
version: "1"
sources:
  - name: orders
    topic: orders-{unique}
    schema: com.example.Order
    event_time: created_at
    partitioned_by: customer_id
    watermark: {{max_out_of_orderness: 5s, idle_timeout: 60s}}
stages:
  - map: tests.support.maps:picky_in_eur
  - key_by: customer_id
  - window:
      tumbling: 1h
      aggregate:
        order_count: count()
        revenue: sum(amount)
        max_amount: max(amount)
        min_amount: min(amount)
        avg_amount: avg(amount)
        first_order: first(order_id)
        last_order: last(order_id)
sink: {{topic: revenue-{unique}, schema: com.example.CustomerRevenue}}
commit_interval: 100ms
retry:
  attempts: 1
  backoff: {{initial: 100ms, multiplier: 2.0, max: 1s, jitter: false}}
  topic_attempts: 3
"""

STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
REVENUE = AvroCodec(STORE, STORE.get("com.example.CustomerRevenue"))


def source_partition(key: str) -> int:
    """Not the partition librdkafka's default partitioner (CRC-32 of the key) picks."""
    return (zlib.crc32(key.encode()) + 1) % PARTITIONS


def order(order_id: str, key: str, t: int, amount: float) -> bytes:
    return ORDER.encode(
        {
            "order_id": order_id,
            "customer_id": key,
            "amount": amount,
            "currency": "USD",
            "status": "PAID",
            "country": "DE",
            "created_at": t,
        }
    )


def test_retried_records_count_once_in_the_window_of_their_source_partition(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path = tmp_path / "winretry.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    topology = load_topology(path)
    topics = topology_topics(topology, PARTITIONS)
    assert topics[topology.retry_topic][0] == PARTITIONS
    create_topics(kafka, topics)
    source = f"orders-{unique}"

    expected = {}
    producer = Producer(kafka.config())
    for k, key in enumerate(KEYS):
        ids, amounts = [], []
        for i in range(10):
            order_id = f"flaky-{key}-{i}" if i in FLAKY else f"ok-{key}-{i}"
            amount = float(10 + 3 * i + k)
            producer.produce(
                source,
                key=key.encode(),
                value=order(order_id, key, BASE_T + i * 60_000 + k, amount),
                partition=source_partition(key),
            )
            ids.append(order_id)
            amounts.append(amount * RATES["USD"])
        expected[key] = {
            "customer_id": key,
            "window_start": BASE_T,
            "window_end": BASE_T + HOUR,
            "order_count": 10,
            "revenue": sum(amounts),
            "max_amount": max(amounts),
            "min_amount": min(amounts),
            "avg_amount": sum(amounts) / 10,
            "first_order": ids[0],
            "last_order": ids[-1],
        }
    assert producer.flush(30) == 0

    calls_file = tmp_path / "calls.txt"
    env = process_env(kafka) | {"STREAMLINE_TEST_CALL_LOG": str(calls_file)}
    proc = StreamlineProcess(path, "w", env, tmp_path).start()
    try:
        await_started(proc)
        # every flaky order: failed twice (each time to the retry topic), then mapped
        flaky = {f"flaky-{key}-{i}" for key in KEYS for i in FLAKY}
        deadline = time.monotonic() + 60
        calls: Counter[str] = Counter()
        while time.monotonic() < deadline:
            if calls_file.exists():
                calls = Counter(line.split()[0] for line in calls_file.read_text().splitlines())
            if all(calls[f] >= 3 for f in flaky):
                break
            time.sleep(0.2)
        assert all(calls[f] == 3 for f in flaky), calls

        # then one record per partition two hours later closes the first hour's windows
        for p in range(PARTITIONS):
            producer.produce(
                source,
                key=b"closing",
                value=order(f"closing-{p}", "closing", BASE_T + 3 * HOUR, 1.0),
                partition=p,
            )
        assert producer.flush(30) == 0
        values = [
            REVENUE.decode(m.value())
            for m in read_all(kafka, f"revenue-{unique}", timeout=60, expected=len(KEYS))
        ]
        time.sleep(2)  # a duplicate or split window would show up by now
        values = [REVENUE.decode(m.value()) for m in read_all(kafka, f"revenue-{unique}")]
    finally:
        assert proc.stop() == 0

    assert sorted(v["customer_id"] for v in values) == KEYS  # one window per key, no split
    for value in values:
        want = expected[value["customer_id"]]
        for field in ("revenue", "max_amount", "min_amount", "avg_amount"):
            assert value[field] == pytest.approx(want[field], rel=1e-9), field
        assert {k: v for k, v in value.items() if not isinstance(v, float)} == {
            k: v for k, v in want.items() if not isinstance(v, float)
        }
    assert not read_all(kafka, topology.dead_letter_topic)
    assert not read_all(kafka, topology.late_topic)
    retried = Counter(
        (ORDER.decode(m.value())["customer_id"], m.partition())
        for m in read_all(kafka, topology.retry_topic)
    )
    # two passes per flaky order, each into its source partition's number
    assert retried == {(key, source_partition(key)): 2 * len(FLAKY) for key in KEYS}
