"""Windowed aggregation end to end: exact against a brute-force oracle, through crashes and rebalances."""

from __future__ import annotations

import math
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.integration.test_run import scrape, total
from tests.support.harness import (
    SCHEMAS,
    StreamlineProcess,
    crash_repeatedly,
    duplicates,
    process_env,
)
from tests.support.windows_oracle import Event, events, order, windows

pytestmark = pytest.mark.slow

OOO_MS = 5000
STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
REVENUE = AvroCodec(STORE, STORE.get("com.example.CustomerRevenue"))

WINDOWS = {
    "tumbling": "tumbling: 1m",
    "hopping": "hopping: {size: 3m, advance: 1m}",
    "session": "session: {gap: 30s}",
}

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    {partitioned_by}
    watermark:
      max_out_of_orderness: 5s
      idle_timeout: 2s
stages:
  - filter: "status == 'PAID'"
  - key_by: customer_id
  - window:
      {window}
      allowed_lateness: {lateness}
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
"""


def produce_orders(
    kafka: Connection,
    topic: str,
    evts: list[Event],
    key_by_order: bool = False,
    event_time_stamps: bool = False,
) -> None:
    """The events as PAID orders in EUR, keyed by customer (or by order id).

    With `event_time_stamps`, each record's Kafka timestamp is its event time.
    """
    producer = Producer(kafka.config(**{"enable.idempotence": True, "linger.ms": 20}))
    for e in evts:
        value = ORDER.encode(order(e), check=False)
        key = e.order_id if key_by_order else e.key
        while True:
            try:
                if event_time_stamps:
                    producer.produce(topic, key=key.encode(), value=value, timestamp=e.t)
                else:
                    producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


class Scenario:
    """A windowed topology, its topics and its input, in a test's temp folder."""

    def __init__(
        self,
        kafka: Connection,
        tmp: Path,
        unique: str,
        kind: str,
        repartition: bool = False,
        lateness: str = "0s",
        partitions: int = 3,
    ) -> None:
        self.kafka = kafka
        self.tmp = tmp
        self.kind = kind
        self.repartition = repartition
        self.name = f"win-{unique}"
        self.source, self.sink = f"orders-{unique}", f"revenue-{unique}"
        folder = tmp / "topologies"
        folder.mkdir(exist_ok=True)
        self.path = folder / f"{self.name}.yaml"
        self.path.write_text(
            TOPOLOGY.format(
                name=self.name,
                source=self.source,
                sink=self.sink,
                window=WINDOWS[kind],
                lateness=lateness,
                partitioned_by="" if repartition else "partitioned_by: customer_id",
            )
        )
        topology = load_topology(self.path)
        create_topics(kafka, topology_topics(topology, partitions))
        self.topology = topology
        self.env = process_env(kafka)

    def produce(self, evts: list[Event]) -> None:
        """Orders keyed by customer (or, for repartitioning, by order id) to the source topic."""
        produce_orders(self.kafka, self.source, evts, key_by_order=self.repartition)

    def expected(self, evts: list[Event]) -> dict[tuple[str, int], dict[str, Any]]:
        window = self.topology.window
        assert window is not None
        hopping = window.hopping
        size = window.tumbling or (hopping.size if hopping else 0)
        advance = hopping.advance if hopping else 0
        gap = window.session.gap if window.session else 0
        # the watermark each window's partition reaches at the end of the input
        if self.repartition:  # every source partition idle: the max of their watermarks
            return windows(
                evts,
                self.kind,
                size,
                advance,
                gap,
                window.allowed_lateness,
                max(e.t for e in evts) - OOO_MS,
            )
        by_partition = self._partitions_of(evts)
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for own in by_partition.values():
            out.update(
                windows(
                    own,
                    self.kind,
                    size,
                    advance,
                    gap,
                    window.allowed_lateness,
                    max(e.t for e in own) - OOO_MS,
                )
            )
        return out

    def _partitions_of(self, evts: list[Event]) -> dict[int, list[Event]]:
        """Events by the partition the producer put them in (read back from the topic)."""
        where: dict[str, int] = {}
        for msg in read_all(self.kafka, self.source, expected=len(evts), timeout=60):
            where[msg.key().decode()] = msg.partition()
        grouped: dict[int, list[Event]] = {}
        for e in evts:
            grouped.setdefault(where[e.key], []).append(e)
        return grouped

    def process(self, instance: str) -> StreamlineProcess:
        return StreamlineProcess(self.path, instance, self.env, self.tmp)

    def await_output(
        self, expected: dict[tuple[str, int], Any], timeout: float, procs: list[StreamlineProcess]
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        values: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            values = [
                REVENUE.decode(m.value()) for m in read_all(self.kafka, self.sink, timeout=10)
            ]
            if len(values) >= len(expected):
                time.sleep(3)  # anything beyond the expectation would show up now
                return [REVENUE.decode(m.value()) for m in read_all(self.kafka, self.sink)]
            time.sleep(1)
        logs = "\n".join(p.log()[-4000:] for p in procs)
        raise AssertionError(f"{len(values)} of {len(expected)} windows after {timeout}s\n{logs}")

    def finish_exact(
        self, evts: list[Event], timeout: float, procs: list[StreamlineProcess]
    ) -> None:
        """Awaits the windows of `evts`, stops `procs` (each exits cleanly) and checks the
        windows equal the oracle's: nothing lost, nothing counted or emitted twice."""
        expected = self.expected(evts)
        try:
            values = self.await_output(expected, timeout, procs)
        finally:
            for proc in procs:
                assert proc.stop() == 0
        assert_windows_exact(values, expected)


def assert_windows_exact(
    values: list[dict[str, Any]], expected: dict[tuple[str, int], Any]
) -> None:
    keys = [(v["customer_id"], v["window_start"]) for v in values]
    assert duplicates(keys) == []  # type: ignore[arg-type]
    got = {(v["customer_id"], v["window_start"]): v for v in values}
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        for field in (
            "window_end",
            "order_count",
            "first_order",
            "last_order",
            "max_amount",
            "min_amount",
        ):
            assert have[field] == want[field], (key, field)
        for field in ("revenue", "avg_amount"):
            assert math.isclose(have[field], want[field], rel_tol=1e-9), (key, field)


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
def test_every_window_kind_equals_the_oracle(
    kafka: Connection, unique: str, tmp_path: Path, kind: str
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, kind)
    evts = events(100_000, keys=500, step_ms=20, disorder_ms=OOO_MS - 1000)
    scenario.produce(evts)
    scenario.finish_exact(evts, 300, [scenario.process("a").start()])


class SlowFeeder:
    """Produces events in slices over time, so processes can be killed mid-stream."""

    def __init__(
        self, scenario: Scenario, evts: list[Event], slices: int = 20, pause: float = 0.5
    ) -> None:
        import threading

        self.thread = threading.Thread(
            target=self._run, args=(scenario, evts, slices, pause), daemon=True
        )

    @staticmethod
    def _run(scenario: Scenario, evts: list[Event], slices: int, pause: float) -> None:
        size = len(evts) // slices + 1
        for i in range(0, len(evts), size):
            scenario.produce(evts[i : i + size])
            time.sleep(pause)

    def start(self) -> SlowFeeder:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(300)


@pytest.mark.parametrize("repartition", [False, True], ids=["partitioned", "repartitioned"])
def test_sigkill_recovers_from_checkpoint_and_from_changelog(
    kafka: Connection, unique: str, tmp_path: Path, repartition: bool
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling", repartition=repartition)
    evts = events(100_000, keys=500, step_ms=20, disorder_ms=OOO_MS - 1000)
    feeder = SlowFeeder(scenario, evts).start()
    proc = scenario.process("a").start()

    def lose_local_state(restart: int) -> None:
        if restart == 1:  # the second restart rebuilds everything from the changelog
            shutil.rmtree(proc.state_dir)

    crash_repeatedly(proc, random.Random(unique), before_restart=lose_local_state)
    feeder.join()
    scenario.finish_exact(evts, 300, [proc])
    log = proc.log()
    assert "(local checkpoint)" in log
    assert "(from the beginning)" in log


def test_second_instance_takes_over_partitions_with_their_state(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "session", repartition=True)
    evts = events(60_000, keys=300, step_ms=20, disorder_ms=OOO_MS - 1000)
    feeder = SlowFeeder(scenario, evts, slices=15).start()
    first = scenario.process("a").start()
    time.sleep(4)
    second = scenario.process("b").start()
    feeder.join()
    scenario.finish_exact(evts, 300, [first, second])
    assert re.search(r"restored windows partition \d: [1-9]\d* changelog records", second.log())


def test_late_records_go_to_the_late_topic_with_the_watermark_they_missed(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling", lateness="10s", partitions=1)
    minute = 60_000
    on_time = [Event("k-1", f"o-{i}", 1.0, BASE_T + i * 1000, i) for i in range(200)]
    # the watermark is now BASE_T + 199 s - 5 s: the first minute closed at BASE_T + 70 s
    late = [
        Event("k-1", "late-1", 5.0, BASE_T + 10_000, 200),
        Event("k-2", "late-2", 5.0, BASE_T + minute + 30_000, 201),
    ]
    scenario.produce(on_time + late)
    proc = scenario.process("a").start()
    port = proc.metrics_port
    late_topic = scenario.topology.late_topic
    try:
        deadline = time.monotonic() + 120
        found: list[Any] = []
        while time.monotonic() < deadline and len(found) < 2:
            found = read_all(kafka, late_topic, timeout=5)
            time.sleep(0.5)
        counted = total(scrape(port), "streamline_late_records_total", topic=late_topic)
    finally:
        assert proc.stop() == 0
    assert counted == 2
    assert len(found) == 2
    watermark = BASE_T + 199_000 - OOO_MS
    for msg in found:
        headers = dict(msg.headers() or [])
        assert headers["streamline.error.type"] == b"late"
        assert headers["streamline.watermark"] == str(watermark).encode()
        assert ORDER.decode(msg.value())["order_id"].startswith("late-")
    values = [REVENUE.decode(m.value()) for m in read_all(kafka, scenario.sink)]
    first_minute = [v for v in values if v["window_start"] == BASE_T]
    assert first_minute and first_minute[0]["order_count"] == 60  # the late record changed nothing


BASE_T = 1767225600000
