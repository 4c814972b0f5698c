"""Map failures: in-line retries, the retry topic with its not-before time, then dead letters."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import read_all, run_cli
from tests.support.harness import SCHEMAS, StreamlineProcess, duplicates, process_env

TOPOLOGY = """\
apiVersion: streamline/v1
name: retry-{unique}
version: "1"
sources:
  - {{name: orders, topic: orders-{unique}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: tests.support.maps:picky
sink: {{topic: paid-{unique}, schema: com.example.PaidOrder}}
retry:
  attempts: 3
  backoff: {{initial: 100ms, multiplier: 2.0, max: 5s, jitter: false}}
  topic_attempts: 3
"""

STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
PAID = AvroCodec(STORE, STORE.get("com.example.PaidOrder"))


@pytest.mark.slow
def test_inline_retry_retry_topic_and_dead_letter(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path = tmp_path / "retry.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    topology = load_topology(path)
    create_topics(kafka, topology_topics(topology, 2))
    ids = (
        [f"ok-{i}" for i in range(50)]
        + ["flaky-1", "slow-1", "doomed-1"]
        + [f"ok-{i}" for i in range(50, 100)]
    )
    producer = Producer(kafka.config())
    for i, order_id in enumerate(ids):
        producer.produce(
            f"orders-{unique}",
            key=order_id.encode(),
            value=ORDER.encode(
                {
                    "order_id": order_id,
                    "customer_id": "c",
                    "amount": 10.0,
                    "currency": "EUR",
                    "status": "PAID",
                    "country": "DE",
                    "created_at": 1767225600000 + i,
                }
            ),
        )
    producer.flush(10)
    calls_file = tmp_path / "calls.txt"
    env = process_env(kafka) | {"STREAMLINE_TEST_CALL_LOG": str(calls_file)}
    proc = StreamlineProcess(path, "r", env, tmp_path).start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if len(read_all(kafka, f"paid-{unique}")) >= len(ids) - 1 and read_all(
                kafka, topology.dead_letter_topic
            ):
                break
            time.sleep(0.5)
    finally:
        assert proc.stop() == 0

    out = [PAID.decode(m.value())["order_id"] for m in read_all(kafka, f"paid-{unique}")]
    assert duplicates(out) == []
    assert sorted(out) == sorted(i for i in ids if not i.startswith("doomed-"))

    calls: dict[str, list[int]] = defaultdict(list)
    for line in calls_file.read_text().splitlines():
        order_id, at = line.split()
        calls[order_id].append(int(at))
    assert len(calls["flaky-1"]) == 3  # two failures, then success, all in line
    retried = [
        (ORDER.decode(m.value())["order_id"], dict(m.headers() or []))
        for m in read_all(kafka, topology.retry_topic)
    ]
    slow = [headers for order_id, headers in retried if order_id == "slow-1"]
    assert slow, "slow-1 went through the retry topic"
    for headers in slow:
        failed_at = int(headers["streamline.failed_at"])
        not_before = int(headers["streamline.retry.not_before"])
        assert not_before > failed_at
        assert not [t for t in calls["slow-1"] if failed_at < t < not_before]
    assert "flaky-1" not in {order_id for order_id, _ in retried}
    assert [order_id for order_id, _ in retried].count("doomed-1") == 3

    dead = read_all(kafka, topology.dead_letter_topic)
    assert len(dead) == 1
    headers = dict(dead[0].headers() or [])
    assert ORDER.decode(dead[0].value())["order_id"] == "doomed-1"
    assert headers["streamline.error.type"] == b"map"
    assert headers["streamline.attempts"] == b"12"  # 3 in line, then 3 passes of the retry topic
    assert len(calls["doomed-1"]) == 12

    # reconcile: the retried records were read again from the retry topic, yet each input
    # is accounted for once, by its output or its dead letter
    result = run_cli("reconcile", str(path), "--since", "1h", "--json", env=process_env(kafka))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["totals"] == {
        "inputs": len(ids), "outputs": len(ids) - 1, "dead_letters": 1, "late": 0,
        "retry_waiting": 0, "dropped": 0, "unexplained": 0,
        "in_windows": 0, "open_windows": 0,
    }  # fmt: skip
