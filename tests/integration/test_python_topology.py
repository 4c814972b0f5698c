"""A topology declared in Python, with a plain function as map, runs on the same runtime."""

from __future__ import annotations

import threading
from typing import Any

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.runtime.processor import RunOptions
from streamline.runtime.runner import run_topology
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import check_topology
from streamline.topology.builder import Topology
from tests.helpers import read_all
from tests.support.harness import SCHEMAS, InputFeeder, order_stream


def shout_country(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"],
        "country": order["country"].lower(),
        "created_at": order["created_at"],
    }


def test_python_built_topology_runs_with_its_callable(kafka: Connection, unique: str) -> None:
    source, sink = f"py-orders-{unique}", f"py-out-{unique}"
    topology = (
        Topology(f"py-{unique}", version="1")
        .source(
            name="orders",
            topic=source,
            schema="com.example.Order",
            event_time="created_at",
            max_out_of_orderness="1s",
        )
        .filter("currency == 'EUR' && amount > 0.0")
        .map(shout_country)
        .to(topic=sink, schema="com.example.PaidOrder")
    )
    store = SchemaStore(SCHEMAS)
    checked = check_topology(topology, store)
    create_topics(kafka, {t: (2, {}) for t in (source, sink, topology.dead_letter_topic)})
    create_topics(kafka, {"streamline.lineage": (3, {})})
    stream = [s for s in order_stream(300) if s[2] == "ok"]
    feeder = InputFeeder(kafka, source, stream, rate=100_000)
    feeder.start()
    feeder.join(30)
    expected = {
        r["order_id"]: shout_country(r)
        for *_, r in stream
        if r is not None and r["currency"] == "EUR" and r["amount"] > 0
    }
    codec = AvroCodec(store, store.get("com.example.PaidOrder"))
    stop = threading.Event()
    worker = threading.Thread(
        target=run_topology,
        kwargs={
            "checked": checked,
            "store": store,
            "connection": kafka,
            "options": RunOptions(instance_id="py"),
            "metrics_port": 0,
            "stop": stop,
        },
    )
    worker.start()
    try:
        outputs = read_all(kafka, sink, timeout=60, expected=len(expected))
    finally:
        stop.set()
        worker.join(30)
    values = [codec.decode(m.value()) for m in outputs]
    assert {v["order_id"]: v for v in values} == expected
    assert len(values) == len(expected)
