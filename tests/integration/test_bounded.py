"""`streamline run --until-caught-up`: a bounded run over a backlog stops by itself, output exact."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from streamline.kafka.admin import existing_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from tests.helpers import read_all, run_cli
from tests.integration.test_dlq import PAID_ORDER
from tests.integration.test_replay import kafka_tool
from tests.integration.test_windows import (
    OOO_MS,
    REVENUE,
    Scenario,
    assert_windows_exact,
)
from tests.support.harness import (
    SCHEMAS,
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


def test_a_source_written_in_transactions_is_caught_up_at_its_last_record(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    # the source ends with a commit marker after its last record: the group commits up to
    # the last record, one short of the end offset, and that is caught up
    path, source, sink, _dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(500)
    producer = Producer(kafka.config(**{"transactional.id": f"upstream-{unique}"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value, *_rest in stream:
        producer.produce(source, key=key, value=value)
    producer.commit_transaction(30)
    expected = expectation(stream)
    done = run_cli(
        "run", str(path), "--until-caught-up", "--max-wait", "60s", "--metrics-port", "0",
        "--state-dir", str(tmp_path / "state"), env=process_env(kafka), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "until caught up: done" in done.stderr
    outputs = [PAID_ORDER.decode(m.value()) for m in read_all(kafka, sink, timeout=30)]
    assert {o["order_id"]: o for o in outputs} == expected.outputs
    assert len(outputs) == len(expected.outputs)

    # caught up, `lag` shows 0 where Kafka's tool counts the commit marker as 1
    group = f"crash-{unique}"
    env = {**process_env(kafka), "STREAMLINE_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    theirs = _described(kafka, group, source)
    assert {p: lag for p, (_committed, _end, lag) in theirs.items()} == {0: 1, 1: 1, 2: 1}
    ours = run_cli("lag", str(path), "--schemas", str(SCHEMAS), env=env)
    assert ours.returncode == 0, ours.stderr
    for p, (committed, end, _lag) in theirs.items():
        assert re.search(
            rf"{source}\s*│\s*{p}\s*│\s*{committed}\s*│\s*{end}\s*│\s*0\s*│", ours.stdout
        ), ours.stdout
    assert re.search(r"total\s*│\s*│\s*│\s*\d+\s*│\s*0\s*│", ours.stdout), ours.stdout
    # two more records in a transaction on partition 0: lag counts them and both markers
    producer.begin_transaction()
    for key, value, *_rest in order_stream(2):
        producer.produce(source, key=key, value=value, partition=0)
    producer.commit_transaction(30)
    ours = run_cli("lag", str(path), "--schemas", str(SCHEMAS), env=env)
    committed, end, _lag = theirs[0]
    assert re.search(
        rf"{source}\s*│\s*0\s*│\s*{committed}\s*│\s*{end + 3}\s*│\s*4\s*│", ours.stdout
    ), ours.stdout
    assert re.search(r"total\s*│\s*│\s*│\s*\d+\s*│\s*4\s*│", ours.stdout), ours.stdout


def _described(kafka: Connection, group: str, topic: str) -> dict[int, tuple[int, int, int]]:
    """Kafka's `kafka-consumer-groups --describe`: partition -> (committed, end, lag)."""
    described = kafka_tool(
        "--bootstrap-server", kafka.bootstrap_servers, "--describe", "--group", group
    )
    return {
        int(fields[2]): (int(fields[3]), int(fields[4]), int(fields[5]))
        for fields in (line.split() for line in described.splitlines())
        if len(fields) >= 6 and fields[1] == topic
    }


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


def test_run_creates_the_missing_internal_topics_like_topics_create_and_not_with_the_flag(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling", partitions=2)
    owned = [t for t in existing_topics(kafka) if t.startswith(f"{scenario.name}.")]
    assert owned  # the scenario made them; drop them, as a newcomer never made them
    admin = AdminClient(kafka.config())
    for future in admin.delete_topics(owned).values():
        future.result(30)
    await_gone(kafka, owned)

    refused = run_cli(
        "run", str(scenario.path), "--no-create-topics", "--until-caught-up",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state"), env=scenario.env,
    )  # fmt: skip
    assert refused.returncode == 1
    name = scenario.name
    assert f"topic {name}.dlq, {name}.late, {name}.windows.changelog does not exist" in (
        refused.stderr
    )
    assert not set(owned) & set(existing_topics(kafka))

    evts = events(2000, keys=20, step_ms=20, disorder_ms=1000)
    scenario.produce(evts)
    done = run_cli(
        "run", str(scenario.path), "--until-caught-up", "--max-wait", "2m",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state"), env=scenario.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"created internal topic {scenario.name}.windows.changelog [2 partitions]" in done.stderr
    wanted = topology_topics(scenario.topology, 2, existing_topics(kafka))
    counts = existing_topics(kafka)
    for name in owned:
        assert counts[name] == wanted[name][0], name
    changelog = f"{scenario.name}.windows.changelog"
    resource = ConfigResource(ConfigResource.Type.TOPIC, changelog)
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["cleanup.policy"].value == "compact,delete"
    values = [REVENUE.decode(m.value()) for m in read_all(kafka, scenario.sink, timeout=30)]
    assert_windows_exact(values, scenario.expected(evts))


def await_gone(kafka: Connection, topics: list[str]) -> None:
    deadline = time.monotonic() + 30
    while set(topics) & set(existing_topics(kafka)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
