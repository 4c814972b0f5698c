"""Every metric and label the Grafana dashboard queries is in a real `streamline run`'s /metrics.

A windowed topology runs as a process against the broker, on input that makes it write
outputs, dead letters (undecodable and invalid records), drops (filtered records) and late
records; its /metrics is scraped over HTTP and compared with the dashboard's queries.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.support.dashboard import (
    Exposition,
    Use,
    exercised_metrics,
    load_dashboard,
    metric_uses,
    missing,
    queries,
)
from tests.support.harness import SCHEMAS, StreamlineProcess, process_env

pytestmark = pytest.mark.kafka

BASE_T = 1767225600000
OOO_MS = 5000

NOT_WRITTEN_HERE = {
    "streamline_transaction_aborts_total": "a clean run aborts no transaction",
    "streamline_retries_total": "the topology has no map stage to retry",
    "streamline_stage_inflight": "the topology has no map with calls in flight",
    "streamline_call_seconds_bucket": "the topology has no map with per-call settings",
    "streamline_call_seconds_count": "the topology has no map with per-call settings",
    "streamline_circuit_state": "the topology has no map with a circuit breaker",
    "streamline_circuit_transitions_total": "the topology has no map with a circuit breaker",
    "streamline_throttled_seconds_total": "the topology has no map with a rate limit",
    "streamline_join_misses_total": "the topology has no join stage",
    "streamline_join_matches_total": "the topology has no stream-stream join",
    "streamline_join_unmatched_total": "the topology has no stream-stream join",
    "streamline_join_buffered_records": "the topology has no stream-stream join",
    "streamline_table_lag": "the topology has no table",
    "streamline_table_records": "the topology has no table",
    "streamline_standby_lag": "the topology has no standby replicas",
}
"""Series the dashboard queries that this run has no occasion to write: their family must be
in the scrape, and their labels are checked against the families streamline declares."""

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    partitioned_by: customer_id
    watermark:
      max_out_of_orderness: 5s
      idle_timeout: 2s
stages:
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
        - name: known_country
          expr: "country in ['DE', 'FR']"
          severity: warn
      on_failure: dead_letter
  - filter: "status == 'PAID'"
  - key_by: customer_id
  - window:
      tumbling: 1m
      allowed_lateness: 0s
      aggregate:
        order_count: count()
        revenue: sum(amount)
        max_amount: max(amount)
        min_amount: min(amount)
        avg_amount: avg(amount)
        first_order: first(order_id)
        last_order: last(order_id)
sink:
  topic: {sink}
  schema: com.example.CustomerRevenue
commit_interval: 100ms
freshness:
  max_staleness: 1m
  heartbeat_interval: 1s
quality:
  track_nulls: [country]
"""


def produce_input(kafka: Connection, topic: str) -> None:
    """On-time orders over 150 s of event time, then one invalid, one undecodable, two late."""
    store = SchemaStore(SCHEMAS)
    order = AvroCodec(store, store.get("com.example.Order"))

    def value(i: int, t: int, amount: float = 10.0, status: str = "PAID") -> bytes:
        return order.encode(
            {
                "order_id": f"o-{i}",
                "customer_id": f"c-{i % 3}",
                "amount": amount,
                "currency": "EUR",
                "status": status,
                "country": "DE",
                "created_at": t,
            }
        )

    records = [
        value(i, BASE_T + i * 1000, status="PENDING" if i % 10 == 0 else "PAID") for i in range(150)
    ]
    # the watermark is now BASE_T + 149 s - 5 s: the windows of the first two minutes fired
    records += [
        value(150, BASE_T + 149_000, amount=-1.0),
        b"not avro",
        value(151, BASE_T + 10_000),
        value(152, BASE_T + 70_000),
    ]
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for record in records:
        producer.produce(topic, key=b"c", value=record)
    assert producer.flush(30) == 0


def scrape(port: int) -> Exposition:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return Exposition.parse(response.read().decode())


def dashboard_uses() -> list[tuple[str, Use]]:
    return [
        (where, use) for where, query in queries(load_dashboard()) for use in metric_uses(query)
    ]


def unwritten(uses: list[tuple[str, Use]], exposition: Exposition) -> set[str]:
    return {u.sample for _w, u in uses if u.sample not in exposition.samples} - set(
        NOT_WRITTEN_HERE
    )


def test_the_dashboard_queries_only_what_a_running_topology_exports(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    name, source, sink = f"dash-{unique}", f"orders-{unique}", f"revenue-{unique}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, source=source, sink=sink))
    create_topics(kafka, topology_topics(load_topology(path), 1))
    produce_input(kafka, source)
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    port = proc.metrics_port
    uses = dashboard_uses()
    exposition = Exposition()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                exposition = scrape(port)
            except OSError:  # not serving yet
                exposition = Exposition()
            if exposition.samples and not unwritten(uses, exposition):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"never written: {sorted(unwritten(uses, exposition))}\n{proc.log()[-3000:]}"
            )
    finally:
        assert proc.stop() == 0

    written = [(w, u) for w, u in uses if u.sample not in NOT_WRITTEN_HERE]
    assert [f"{w}: {p}" for w, u in written for p in missing([u], exposition)] == []

    declared = Exposition.parse(exercised_metrics().render().decode())
    for where, use in uses:
        if use.sample in NOT_WRITTEN_HERE:
            assert exposition.family_of(use.sample) is not None, f"{where}: {use.sample}"
            assert missing([use], declared) == [], where
