"""Freshness heartbeats: every interval, with the SLA status moving ok -> late -> breached."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.integration.test_run import scrape
from tests.support.harness import SCHEMAS, StreamlineProcess, await_started, process_env

TOPOLOGY = """\
apiVersion: streamline/v1
name: fresh-{unique}
version: "1"
sources:
  - name: orders
    topic: orders-{unique}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 0s}}
stages:
  - filter: "status == 'PAID'"
sink:
  topic: out-{unique}
  schema: com.example.Order
freshness:
  max_staleness: 2s
  breach_after: 4s
  heartbeat_interval: 500ms
"""


@pytest.mark.slow
def test_heartbeats_track_staleness_through_ok_late_breached(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path = tmp_path / "fresh.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    topology = load_topology(path)
    create_topics(kafka, topology_topics(topology, 1))
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store, store.get("com.example.Order"))
    proc = StreamlineProcess(path, "h", process_env(kafka), tmp_path).start()
    port = proc.metrics_port
    producer = Producer(kafka.config())
    try:
        await_started(proc)
        started = time.time()
        for i in range(10):  # fresh events for a second
            now = int(time.time() * 1000)
            producer.produce(
                f"orders-{unique}",
                value=codec.encode(
                    {
                        "order_id": f"o-{i}",
                        "customer_id": "c",
                        "amount": 1.0,
                        "currency": "EUR",
                        "status": "PAID",
                        "country": "DE",
                        "created_at": now,
                    }
                ),
            )
            producer.flush(5)
            time.sleep(0.1)
        last_event = now
        deadline = time.monotonic() + 30
        beats: list[dict] = []
        while time.monotonic() < deadline:
            beats = [
                json.loads(m.value())
                for m in read_all(kafka, "streamline.heartbeats", timeout=5)
                if m.key() == f"fresh-{unique}".encode()
            ]
            if (
                beats
                and beats[-1]["partitions"]
                and beats[-1]["partitions"][0]["status"] == "breached"
            ):
                break
            time.sleep(0.5)
        samples = scrape(port)
    finally:
        assert proc.stop() == 0
    ours = [b for b in beats if b["time"] >= started * 1000 and b["partitions"]]
    statuses = [
        b["partitions"][0]["status"] for b in ours if b["partitions"][0]["watermark"] is not None
    ]
    # the status only gets worse once event time stops, and passes through every level
    order = {"ok": 0, "late": 1, "breached": 2}
    assert statuses == sorted(statuses, key=order.__getitem__)
    assert {"ok", "late", "breached"} <= set(statuses)
    for beat in ours:
        entry = beat["partitions"][0]
        if entry["watermark"] is None:
            continue
        assert entry["watermark"] == last_event or entry["watermark"] < last_event
        staleness = beat["time"] - entry["watermark"]
        assert entry["staleness_ms"] == staleness
        want = "ok" if staleness <= 2000 else "late" if staleness <= 4000 else "breached"
        assert entry["status"] == want
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(ours)]
    assert gaps and all(400 <= g <= 1500 for g in gaps), gaps
    labels = f'partition="0",status="breached",topic="orders-{unique}",topology="fresh-{unique}"'
    assert samples[f"streamline_sla_status{{{labels}}}"] == 1.0
