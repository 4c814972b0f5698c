"""Replay and lag: offsets reset with state reset, Kafka's own tools, and agreement on lag."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streamline.kafka.connection import Connection
from tests.helpers import ROOT, read_all, run_cli
from tests.integration.test_run import scrape
from tests.integration.test_windows import (
    OOO_MS,
    REVENUE,
    Scenario,
    assert_windows_exact,
    produce_orders,
)
from tests.support.harness import StreamlineProcess, await_started
from tests.support.windows_oracle import events

pytestmark = pytest.mark.slow

KAFKA_LIBS = ROOT / "kafka" / "libs"


def sink_ends(scenario: Scenario) -> dict[int, int]:
    """Offset after the last committed record of each sink partition (where the next pass starts)."""
    ends: dict[int, int] = {}
    for msg in read_all(scenario.kafka, scenario.sink):
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
    return ends


def run_to_completion(
    scenario: Scenario,
    expected: dict[Any, Any],
    instance: str = "a",
    after: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Runs the topology until `expected` windows past the offsets `after` are committed."""
    after = after or {}

    def outputs() -> list[dict[str, Any]]:
        return [
            REVENUE.decode(m.value())
            for m in read_all(scenario.kafka, scenario.sink)
            if m.offset() >= after.get(m.partition(), 0)
        ]

    proc = scenario.process(instance).start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(outputs()) < len(expected):
            time.sleep(0.5)
        time.sleep(2)  # anything beyond the expectation would show up now
    finally:
        assert proc.stop() == 0
    return outputs()


def kafka_tool(*args: str) -> str:
    """Runs Kafka's own consumer-group tool from the resolved jars."""
    done = subprocess.run(
        [
            "java",
            "-cp",
            f"{KAFKA_LIBS}/*",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_to_earliest_emits_the_same_windows_again(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(20_000, keys=100, step_ms=20, disorder_ms=OOO_MS - 1000)
    scenario.produce(evts)
    expected = scenario.expected(evts)
    first = run_to_completion(scenario, expected)
    assert_windows_exact(first, expected)

    replayed = run_cli("replay", str(scenario.path), "--to-earliest", env=scenario.env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"{len(evts)} records will be processed again" in replayed.stdout

    second = run_to_completion(scenario, expected, after=sink_ends(scenario))
    assert_windows_exact(second, expected)  # the same windows, each once, nothing counted twice


def test_replay_to_datetime_plan_dry_run_and_refusal_while_running(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(3_000, keys=20, step_ms=20, disorder_ms=1000)
    produce_orders(kafka, scenario.source, evts, event_time_stamps=True)
    expected = scenario.expected(evts)
    run_to_completion(scenario, expected)
    messages = read_all(kafka, scenario.source, timeout=60, expected=len(evts))
    assert len(messages) == len(evts)
    cut = sorted(e.t for e in evts)[len(evts) // 2]
    want: dict[int, int] = {}
    for msg in sorted(messages, key=lambda m: m.offset()):
        if msg.timestamp()[1] >= cut and msg.partition() not in want:
            want[msg.partition()] = msg.offset()

    before = committed_offsets(kafka, scenario)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut // 1000)) + f".{cut % 1000:03d}Z"
    dry = run_cli("replay", str(scenario.path), "--to-datetime", iso, "--dry-run", env=scenario.env)
    assert dry.returncode == 0, dry.stderr
    for partition, offset in want.items():
        assert re.search(
            rf"{scenario.source}\s*│\s*{partition}\s*│\s*\d+\s*│\s*{offset}\s*│", dry.stdout
        ), dry.stdout
    assert "nothing changed" in dry.stdout
    assert committed_offsets(kafka, scenario) == before

    proc = scenario.process("busy").start()
    try:
        await_started(proc)
        refused = run_cli("replay", str(scenario.path), "--to-datetime", iso, env=scenario.env)
    finally:
        assert proc.stop() == 0
    assert refused.returncode == 2
    assert "has active members" in refused.stderr and "busy" in refused.stderr

    done = run_cli("replay", str(scenario.path), "--to-datetime", iso, env=scenario.env)
    assert done.returncode == 0, done.stderr
    assert committed_offsets(kafka, scenario) == want


def committed_offsets(kafka: Connection, scenario: Scenario) -> dict[int, int]:
    consumer = Consumer(kafka.config(**{"group.id": scenario.topology.group_id}, log_level=0))
    try:
        tps = [TopicPartition(scenario.source, p) for p in range(3)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=15)}
    finally:
        consumer.close()


def test_offsets_reset_with_kafkas_tool_rebuild_state_without_double_counting(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(10_000, keys=50, step_ms=20, disorder_ms=OOO_MS - 1000)
    scenario.produce(evts)
    expected = scenario.expected(evts)
    first = run_to_completion(scenario, expected)
    assert_windows_exact(first, expected)

    kafka_tool(
        "--bootstrap-server",
        kafka.bootstrap_servers,
        "--group",
        scenario.topology.group_id,
        "--reset-offsets",
        "--to-earliest",
        "--topic",
        scenario.source,
        "--execute",
    )
    proc = scenario.process("a")
    second = run_to_completion(scenario, expected, after=sink_ends(scenario))
    assert_windows_exact(second, expected)
    assert "were reset outside streamline" in proc.log()


def test_lag_agrees_with_kafkas_describe_and_prometheus(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(6_000, keys=50, step_ms=20, disorder_ms=1000)
    scenario.produce(evts[:4000])
    proc = StreamlineProcess(scenario.path, "lag", scenario.env, tmp_path).start()
    port = proc.metrics_port
    try:
        await_started(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # drained: the gauges read 0
            samples = scrape(port)
            lags = [v for k, v in samples.items() if k.startswith("streamline_consumer_lag{")]
            if len(lags) == 3 and not any(lags):
                break
            time.sleep(0.2)
        gauges = {k: v for k, v in scrape(port).items() if k.startswith("streamline_consumer_lag{")}
    finally:
        assert proc.stop() == 0
    assert len(gauges) == 3 and set(gauges.values()) == {0.0}
    scenario.produce(evts[4000:])  # now the group is behind by exactly these records

    ours = run_cli("lag", str(scenario.path), env=scenario.env)
    assert ours.returncode == 0, ours.stderr
    described = kafka_tool(
        "--bootstrap-server",
        kafka.bootstrap_servers,
        "--describe",
        "--group",
        scenario.topology.group_id,
    )
    theirs: Counter[int] = Counter()
    for line in described.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == scenario.source:
            partition, current, end, lag = (
                int(fields[2]),
                int(fields[3]),
                int(fields[4]),
                int(fields[5]),
            )
            theirs[partition] = lag
            assert re.search(
                rf"{scenario.source}\s*│\s*{partition}\s*│\s*{current}\s*│\s*{end}\s*│\s*{lag}\s*│",
                ours.stdout,
            ), (ours.stdout, line)
    assert sum(theirs.values()) == 2000
    assert re.search(r"total\s*│\s*│\s*│\s*\d+\s*│\s*2000\s*│", ours.stdout), ours.stdout
