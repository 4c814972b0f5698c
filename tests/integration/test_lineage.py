"""Lineage: every output traces back to exactly its inputs, across topologies and crashes."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.lineage import read_events, trace
from streamline.ops.topics import topology_topics
from streamline.topology import load_topology
from tests.helpers import read_all, run_cli
from tests.integration.test_windows import OOO_MS, ORDER, REVENUE, Scenario, produce_orders
from tests.support.harness import (
    InputFeeder,
    StreamlineProcess,
    crash_repeatedly,
    expectation,
    make_topology,
    order_stream,
    process_env,
)
from tests.support.windows_oracle import events

pytestmark = pytest.mark.slow

UPSTREAM = """\
apiVersion: streamline/v1
name: up-{unique}
version: "1"
sources:
  - {{name: orders, topic: raw-{unique}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 5s}}}}
stages:
  - filter: "status == 'PAID'"
sink: {{topic: orders-{unique}, schema: com.example.Order}}
"""


def windows_members(
    kafka: Connection, scenario: Scenario, size: int
) -> dict[tuple[str, int], set[tuple[int, int]]]:
    """(key, window_start) -> (partition, offset) of the source records in that window."""
    members: dict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    for msg in read_all(kafka, scenario.source):
        order = ORDER.decode(msg.value())
        start = order["created_at"] // size * size
        members[(order["customer_id"], start)].add((msg.partition(), msg.offset()))
    return members


def test_every_window_traces_to_exactly_its_records_and_depth_2_reaches_upstream(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    # upstream topology: raw -> orders (filter), downstream: orders -> windows per customer
    up_path = tmp_path / "up.yaml"
    up_path.write_text(UPSTREAM.format(unique=unique))
    create_topics(kafka, topology_topics(load_topology(up_path), 3))
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(3_000, keys=20, step_ms=20, disorder_ms=OOO_MS - 1000)
    produce_orders(kafka, f"raw-{unique}", evts)
    env = process_env(kafka)
    up = StreamlineProcess(up_path, "up", env, tmp_path).start()
    down = scenario.process("down").start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_all(kafka, scenario.source)) < len(evts):
            time.sleep(0.5)
        time.sleep(6)  # the last windows close after the idle timeout
        outputs = read_all(kafka, scenario.sink)
        assert outputs
    finally:
        assert up.stop() == 0
        assert down.stop() == 0

    members = windows_members(kafka, scenario, 60_000)
    events_ = read_events(kafka)
    raw_positions = {
        ORDER.decode(m.value())["order_id"]: (m.partition(), m.offset())
        for m in read_all(kafka, f"raw-{unique}")
    }
    mid_positions = {
        (m.partition(), m.offset()): ORDER.decode(m.value())["order_id"]
        for m in read_all(kafka, scenario.source)
    }
    for msg in outputs:
        window = REVENUE.decode(msg.value())
        steps = trace(kafka, scenario.sink, msg.partition(), msg.offset(), depth=2, events=events_)
        ((topic, partition, first, last),) = steps[0].ranges
        mine = members[(window["customer_id"], window["window_start"])]
        assert topic == scenario.source
        assert {p for p, _ in mine} == {partition}
        offsets = sorted(o for _, o in mine)
        assert (first, last) == (offsets[0], offsets[-1])  # tight: first and last formed it
        assert len(offsets) == window["order_count"]
        # depth 2: the upstream topology's inputs hold every raw record behind the window
        assert steps[1].jobs == {f"up-{unique}"}
        upstream = {(p, (a, b)) for t, p, a, b in steps[1].ranges if t == f"raw-{unique}"}
        for offset in offsets:
            p, o = raw_positions[mid_positions[(partition, offset)]]
            assert any(p == q and a <= o <= b for q, (a, b) in upstream)

    traced = run_cli(
        "lineage",
        "trace",
        scenario.sink,
        str(outputs[0].partition()),
        str(outputs[0].offset()),
        "--depth",
        "2",
        env=scenario.env,
    )
    assert traced.returncode == 0, traced.stderr
    assert f"depth 2 (written by up-{unique})" in traced.stdout


def test_after_crashes_each_committed_output_is_covered_by_exactly_one_event(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(20_000)
    expected = expectation(stream)
    feeder = InputFeeder(kafka, source, stream, rate=3000)
    feeder.start()
    proc = StreamlineProcess(topology, "a", process_env(kafka), tmp_path).start()
    crash_repeatedly(proc, random.Random(unique))
    feeder.join(120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_all(kafka, sink)) < len(expected.outputs):
        time.sleep(1)
    assert proc.stop() == 0

    name = f"crash-{unique}"
    mine = [e for e in read_events(kafka) if e.job == name]
    for topic in (sink, dlq):
        committed = {(m.partition(), m.offset()) for m in read_all(kafka, topic)}
        covered: Counter[tuple[int, int]] = Counter()
        for event in mine:
            for (t, p), (a, b) in event.outputs.items():
                if t != topic:
                    continue
                # an event of an aborted transaction would point at records nobody can read
                assert (p, a) in committed and (p, b) in committed
                for o in range(a, b + 1):
                    if (p, o) in committed:
                        covered[(p, o)] += 1
        assert set(covered) == committed
        assert set(covered.values()) == {1}
