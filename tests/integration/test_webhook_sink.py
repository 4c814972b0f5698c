"""The webhook sink against a real local HTTP server that fails 20% of requests and goes down
for 10 s: after dropping repeated idempotency keys, it has exactly the oracle's records."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from tests.helpers import read_all
from tests.support.harness import InputFeeder, StreamlineProcess, order_stream, process_env
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
N_RECORDS = 50_000 if FULL else 6_000
DOWN_S = 10

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 5s}}}}
stages:
  - filter: "status == 'PAID'"
sinks:
  notify:
    schema: com.example.Order
    webhook:
      url: {url}
      batch: 50
      timeout: 2s
      headers: {{x-token: secret}}
      retry: {{attempts: 30, backoff: {{initial: 50ms, multiplier: 2.0, max: 1s}}}}
"""


def test_webhook_receives_every_record_at_least_once(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    receiver = Receiver(fail_share=0.2, seed=5)
    name, source = f"hook-{unique}", f"orders-{unique}"
    path = tmp_path / "topologies" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_text(TOPOLOGY.format(name=name, source=source, url=receiver.url))
    create_topics(kafka, {source: (3, {}), f"{name}.dlq": (3, {})})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    stream = order_stream(N_RECORDS, seed=3)
    want = {r["order_id"]: r for *_rest, r in stream if r is not None and r["status"] == "PAID"}
    feeder = InputFeeder(kafka, source, stream, rate=600 if not FULL else 2500)
    feeder.start()
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    try:
        deadline = time.monotonic() + 60
        while len(receiver.received) < len(want) // 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        receiver.down(True)  # mid-stream: connections are refused for 10 s
        time.sleep(DOWN_S)
        receiver.down(False)
        feeder.join(120)
        assert feeder.error is None
        deadline = time.monotonic() + 120
        while len({k for k, _ in receiver.received}) < len(want) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.stop() == 0, proc.log()[-3000:]
    finally:
        receiver.close()

    keys = Counter(k for k, _ in receiver.received)
    repeats = sum(n - 1 for n in keys.values())
    unique_records = dict(receiver.received)  # a key's repeats carry the same record
    got = {v["order_id"]: v for v in unique_records.values()}
    assert len(got) == len(unique_records)  # one key per record
    assert got == want
    dead_types = Counter(
        dict(m.headers() or [])["streamline.error.type"] for m in read_all(kafka, f"{name}.dlq")
    )
    assert b"sink" not in dead_types  # every batch got through within its retries
    print(
        f"webhook: {len(want)} records, {receiver.requests} requests, {receiver.failed} failed "
        f"(503), {repeats} repeated records dropped by key"
    )
    assert receiver.failed > 0
