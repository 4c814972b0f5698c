"""Stream-table join scenarios: customers whose segments change while orders stream, and the
as-of-event-time oracle computed independently of streamline."""

from __future__ import annotations

import bisect
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import ROOT, read_all
from tests.support.harness import StreamlineProcess, process_env

SCHEMAS = ROOT / "schemas"
STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
CUSTOMER = AvroCodec(STORE, STORE.get("com.example.Customer"))
ENRICHED = AvroCodec(STORE, STORE.get("com.example.EnrichedOrder"))
SEGMENTS = ["bronze", "silver", "gold", "platinum"]
T0 = 1_767_225_600_000
STEP_MS = 10
LEAD = 200
"""An update produced at stream position i is valid from the order at position i + LEAD:
it is written (and flushed) long before any order it applies to."""

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {orders}
    schema: com.example.Order
    event_time: created_at
{partitioned_by}    watermark: {{max_out_of_orderness: 5s}}
tables:
  - name: customers
    topic: {customers}
    schema: com.example.Customer
    key: customer_id
{global_}{versioned}stages:
  - join:
      table: customers
      on: customer_id
      fields: {{segment: segment, customer_country: country}}
sink:
  topic: {sink}
  schema: com.example.EnrichedOrder
commit_interval: 100ms
"""
VERSIONED = "    versioned: {history: 7d}\n    valid_from: updated_at\n"


def customer(i: int, version: int, valid_from: int) -> dict[str, Any]:
    return {
        "customer_id": f"c-{i}",
        "segment": SEGMENTS[version % len(SEGMENTS)],
        "country": ["DE", "FR", "NL"][(i + version) % 3],
        "updated_at": valid_from,
    }


def order(i: int, customers: int, rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{rng.randrange(customers)}",
        "amount": float(i % 500) + 0.5,
        "currency": "EUR",
        "status": "PAID",
        "country": "DE",
        "created_at": T0 + i * STEP_MS,
    }


@dataclass
class Stream:
    """The customers' first versions, the orders, and the updates made while they stream."""

    customers: int
    initial: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    updates: dict[int, dict[str, Any]]  # stream position -> update produced there

    @classmethod
    def make(cls, orders: int, customers: int, updates: int, seed: int = 7) -> Stream:
        rng = random.Random(seed)
        initial = [customer(c, 0, T0 - 1) for c in range(customers)]
        stream = [order(i, customers, rng) for i in range(orders)]
        changes: dict[int, dict[str, Any]] = {}
        versions = [0] * customers
        for position in sorted(rng.sample(range(orders - LEAD), updates)):
            c = rng.randrange(customers)
            versions[c] += 1
            changes[position] = customer(c, versions[c], T0 + (position + LEAD) * STEP_MS)
        return cls(customers, initial, stream, changes)

    def as_of(self) -> dict[str, dict[str, Any]]:
        """The expected output: each order with its customer's version as of its event time."""
        history: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for row in [*self.initial, *(self.updates[p] for p in sorted(self.updates))]:
            history.setdefault(row["customer_id"], []).append((row["updated_at"], row))
        expected = {}
        for o in self.orders:
            versions = history[o["customer_id"]]
            times = [t for t, _ in versions]
            row = versions[bisect.bisect_right(times, o["created_at"]) - 1][1]
            expected[o["order_id"]] = enriched(o, row)
        return expected


def enriched(o: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": o["order_id"],
        "customer_id": o["customer_id"],
        "amount": o["amount"],
        "currency": o["currency"],
        "created_at": o["created_at"],
        "segment": row["segment"],
        "customer_country": row["country"],
    }


@dataclass
class Scenario:
    kafka: Connection
    tmp: Path
    unique: str
    versioned: bool = True
    partitions: int = 3
    global_table: bool = False
    table_partitions: int = 0  # 0: like the orders
    name: str = ""
    orders: str = ""
    customers: str = ""
    sink: str = ""
    path: Path = field(default_factory=Path)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        u = self.unique
        self.name = f"enrich-{u}"
        self.orders, self.customers, self.sink = f"orders-{u}", f"customers-{u}", f"enriched-{u}"
        folder = self.tmp / "topologies"
        folder.mkdir(exist_ok=True)
        self.path = folder / f"{self.name}.yaml"
        self.path.write_text(
            TOPOLOGY.format(
                name=self.name,
                orders=self.orders,
                customers=self.customers,
                sink=self.sink,
                versioned=VERSIONED if self.versioned else "",
                global_="    global: true\n" if self.global_table else "",
                partitioned_by="" if self.global_table else "    partitioned_by: customer_id\n",
            )
        )
        n = self.partitions
        create_topics(
            self.kafka,
            {
                self.orders: (n, {}),
                self.customers: (self.table_partitions or n, {"cleanup.policy": "compact"}),
                self.sink: (n, {}),
                f"{self.name}.dlq": (n, {}),
                "streamline.lineage": (3, {}),
                "streamline.heartbeats": (1, {}),
            },
        )
        self.env = process_env(self.kafka)

    def process(self, instance: str = "a", **kwargs: Any) -> StreamlineProcess:
        return StreamlineProcess(self.path, instance, self.env, self.tmp, **kwargs)

    def producer(self) -> Producer:
        return Producer(self.kafka.config(**{"enable.idempotence": True, "linger.ms": 5}))

    def produce_customers(self, rows: list[dict[str, Any]]) -> None:
        producer = self.producer()
        for row in rows:
            producer.produce(
                self.customers, key=row["customer_id"].encode(), value=CUSTOMER.encode(row)
            )
            producer.poll(0)
        assert producer.flush(60) == 0

    def outputs(self, after: dict[int, int] | None = None) -> list[dict[str, Any]]:
        after = after or {}
        return [
            ENRICHED.decode(m.value())
            for m in read_all(self.kafka, self.sink)
            if m.offset() >= after.get(m.partition(), 0)
        ]

    def dead_letters(self) -> int:
        return len(read_all(self.kafka, f"{self.name}.dlq"))

    def sink_ends(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for msg in read_all(self.kafka, self.sink):
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
        return ends


class Feeder(threading.Thread):
    """Produces the orders at a steady rate, and each update at its stream position, flushing
    every 100 orders so that an update is on the broker before the orders it applies to."""

    def __init__(
        self, scenario: Scenario, stream: Stream, rate: float, key: str = "customer_id"
    ) -> None:
        super().__init__(daemon=True)
        self.key = key
        self.scenario = scenario
        self.stream = stream
        self.rate = rate
        self.error: str | None = None

    def run(self) -> None:
        scenario = self.scenario
        producer = scenario.producer()
        started = time.monotonic()
        try:
            for i, o in enumerate(self.stream.orders):
                update = self.stream.updates.get(i)
                if update is not None:
                    producer.produce(
                        scenario.customers,
                        key=update["customer_id"].encode(),
                        value=CUSTOMER.encode(update),
                    )
                producer.produce(scenario.orders, key=o[self.key].encode(), value=ORDER.encode(o))
                if i % 100 == 99:
                    assert producer.flush(30) == 0
                    ahead = i / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            assert producer.flush(60) == 0
        except Exception as exc:  # reported by the test
            self.error = repr(exc)


def await_outputs(scenario: Scenario, n: int, timeout: float, after: Any = None) -> list[Any]:
    deadline = time.monotonic() + timeout
    outputs = scenario.outputs(after)
    while len(outputs) < n and time.monotonic() < deadline:
        time.sleep(0.5)
        outputs = scenario.outputs(after)
    return outputs
