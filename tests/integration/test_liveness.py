"""/healthz turns 503 when the processing loop stops making progress, so Kubernetes restarts it."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
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

pytestmark = pytest.mark.kafka

TOPOLOGY = """\
apiVersion: streamline/v1
name: stall-{unique}
version: "1"
sources:
  - {{name: orders, topic: orders-{unique}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: tests.support.maps:stalls
sink: {{topic: paid-{unique}, schema: com.example.PaidOrder}}
commit_interval: 100ms
"""

STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
STALL_TIMEOUT_S = 2.0


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def produce(connection: Connection, topic: str, order_ids: list[str]) -> None:
    producer = Producer(connection.config())
    for i, order_id in enumerate(order_ids):
        order = {
            "order_id": order_id,
            "customer_id": "c-1",
            "amount": 10.0,
            "currency": "EUR",
            "status": "PAID",
            "country": "DE",
            "created_at": 1_767_225_600_000 + i,
        }
        producer.produce(topic, key=b"c-1", value=ORDER.encode(order), partition=0)
    assert producer.flush(30) == 0


def test_a_stuck_map_turns_healthz_503_while_an_idle_loop_stays_healthy(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path = tmp_path / "stall.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    create_topics(kafka, topology_topics(load_topology(path), 1))
    proc = StreamlineProcess(
        path,
        "stall-1",
        process_env(kafka),
        tmp_path,
        extra_args=["--stall-timeout", str(STALL_TIMEOUT_S)],
    ).start()
    port = proc.metrics_port
    try:
        await_started(proc)
        produce(kafka, f"orders-{unique}", [f"ok-{i}" for i in range(20)])
        assert len(read_all(kafka, f"paid-{unique}", timeout=30, expected=20)) == 20

        # Idle for longer than the stall timeout: polling is progress, the loop stays healthy.
        idle_until = time.monotonic() + 2 * STALL_TIMEOUT_S
        while time.monotonic() < idle_until:
            assert healthz(port) == (200, "ok\n")
            time.sleep(0.2)

        stuck_at = time.monotonic()  # the hang starts after this, at most a poll (0.1 s) earlier
        produce(kafka, f"orders-{unique}", ["stuck-1"])
        deadline = stuck_at + 30
        status, body = healthz(port)
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            status, body = healthz(port)
        assert status == 503, proc.current_log()[-2000:]
        assert body.startswith("unhealthy:")
        # not before the stall timeout: the clock runs from the last progress, the step that
        # took the record, which began at most one poll before it arrived
        assert time.monotonic() - stuck_at >= STALL_TIMEOUT_S - 0.1
        assert "the processing loop is stuck" in proc.current_log()
        assert (
            proc.proc is not None and proc.proc.poll() is None
        )  # still running: for k8s to restart
    finally:
        proc.kill()
