"""`streamline run --until-caught-up`: a bounded run over a backlog stops by itself, output exact."""

from __future__ import annotations

import os
import time
from pathlib import Path

from confluent_kafka import Producer

from streamline.kafka.connection import Connection
from tests.helpers import read_all, run_cli
from tests.integration.test_dlq import PAID_ORDER
from tests.integration.test_windows import (
    OOO_MS,
    REVENUE,
    Scenario,
    assert_windows_exact,
)
from tests.support.harness import (
    expectation,
    make_topology,
    order_stream,
    process_env,
)
from tests.support.windows_oracle import events

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
BACKLOG = 100_000 if FULL else 10_000


def test_a_windowed_run_over_a_backlog_exits_0_with_every_closable_window_exact(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(BACKLOG, keys=200, step_ms=20, disorder_ms=OOO_MS - 1000)
    scenario.produce(evts)
    expected = scenario.expected(evts)
    started = time.monotonic()
    done = run_cli(
        "run", str(scenario.path), "--until-caught-up", "--max-wait", "5m",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state"),
        env=scenario.env, timeout=400,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "until caught up: done" in done.stderr
    values = [REVENUE.decode(m.value()) for m in read_all(kafka, scenario.sink, timeout=30)]
    assert_windows_exact(values, expected)  # every window once, nothing missing
    print(f"{BACKLOG} events: run --until-caught-up took {took:.1f} s")


def test_a_stateless_run_exits_0_with_every_output_and_dead_letter_exactly_once(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(3000)
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for key, value, *_rest in stream:
        producer.produce(source, key=key, value=value)
    assert producer.flush(30) == 0
    expected = expectation(stream)
    done = run_cli(
        "run", str(path), "--until-caught-up", "--metrics-port", "0",
        "--state-dir", str(tmp_path / "state"), env=process_env(kafka),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = [PAID_ORDER.decode(m.value()) for m in read_all(kafka, sink, timeout=30)]
    assert {o["order_id"]: o for o in outputs} == expected.outputs
    assert len(outputs) == len(expected.outputs)
    letters = [m.value() for m in read_all(kafka, dlq, timeout=30)]
    assert sorted(letters) == sorted(expected.dead_letters)


def test_a_run_that_cannot_finish_within_max_wait_exits_1_saying_so(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")  # windows need 2 s of quiet
    scenario.produce(events(200, keys=10, step_ms=20, disorder_ms=1000))
    done = run_cli(
        "run", str(scenario.path), "--until-caught-up", "--max-wait", "1s",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state"), env=scenario.env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "error: not caught up after --max-wait 1 s" in done.stderr


def test_max_wait_without_until_caught_up_is_a_usage_error(tmp_path: Path) -> None:
    scenario_file = Path(__file__).resolve().parents[2] / "topologies" / "revenue-per-minute.yaml"
    done = run_cli("run", str(scenario_file), "--max-wait", "1m")
    assert done.returncode == 2
    assert "--max-wait goes with --until-caught-up" in done.stderr
