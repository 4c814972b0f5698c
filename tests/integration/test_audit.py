"""The audit trail and reviewable replay plans, against the real broker."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from streamline.kafka.admin import committed_offsets, end_offsets
from streamline.kafka.connection import Connection
from streamline.ops.audit import read_audit_events
from streamline.topology import load_topology
from tests.helpers import run_cli
from tests.integration.test_dlq import DeadLetters, dead_letters  # noqa: F401 - fixture
from tests.support.harness import StreamlineProcess, make_topology, order_stream, process_env


def produce(kafka: Connection, topic: str, stream: list[Any]) -> None:
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for key, value, *_rest in stream:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def committed(kafka: Connection, group: str, topic: str) -> dict[int, int]:
    offsets = committed_offsets(kafka, group, [TopicPartition(topic, p) for p in range(3)])
    return {p: offsets[(topic, p)].offset for p in range(3)}


def run_until_committed(path: Path, env: dict[str, str], tmp: Path, kafka: Connection) -> None:
    """Runs the topology until its group has committed every source partition's end."""
    topology = load_topology(path)
    source = topology.source.topic
    ends = end_offsets(kafka, source, "audit-test")
    proc = StreamlineProcess(path, "a", env, tmp).start()
    try:
        deadline = time.monotonic() + 90
        while committed(kafka, topology.group_id, source) != ends:
            assert time.monotonic() < deadline, proc.log()[-3000:]
            time.sleep(0.3)
    finally:
        assert proc.stop() == 0, proc.log()[-3000:]


def events_of(kafka: Connection, name: str) -> list[dict[str, Any]]:
    return list(read_audit_events(kafka, name))


def test_a_plan_whose_offsets_moved_is_refused_and_a_fresh_one_applies_exactly_with_one_event(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, _sink, _dlq = make_topology(tmp_path, kafka, unique)
    env = process_env(kafka)
    group = load_topology(path).group_id
    produce(kafka, source, order_stream(300))
    run_until_committed(path, env, tmp_path, kafka)

    stale = tmp_path / "stale.json"
    made = run_cli("replay", str(path), "--to-earliest", "--plan-out", str(stale), env=env)
    assert made.returncode == 0, made.stderr
    assert "plan written to" in made.stdout
    assert committed(kafka, group, source) == end_offsets(kafka, source, "audit-test")

    produce(kafka, source, order_stream(60, seed=2))  # the topology moves on
    run_until_committed(path, env, tmp_path, kafka)
    moved = committed(kafka, group, source)
    refused = run_cli("replay", str(path), "--apply", str(stale), env=env)
    assert refused.returncode == 2, refused.stderr
    assert "offsets moved since the plan was made" in refused.stderr
    assert f"{source}/0:" in refused.stderr
    assert committed(kafka, group, source) == moved  # nothing changed

    fresh = tmp_path / "fresh.json"
    made = run_cli("replay", str(path), "--to-earliest", "--plan-out", str(fresh), env=env)
    assert made.returncode == 0, made.stderr
    plan = json.loads(fresh.read_text())
    assert [p["current"] for p in plan["partitions"]] == [moved[p] for p in range(3)]
    assert plan["records"] == 360
    applied = run_cli("replay", str(path), "--apply", str(fresh), env=env)
    assert applied.returncode == 0, applied.stderr
    assert committed(kafka, group, source) == {
        p["partition"]: p["target"] for p in plan["partitions"]
    }

    events = events_of(kafka, path.stem)
    assert [e["result"]["status"] for e in events] == ["refused", "applied"]
    event = events[1]
    assert event["action"] == "replay"
    assert event["plan"] == plan
    assert event["result"]["detail"] == {"records": 360}
    assert event["who"]["os_user"] == getpass.getuser()
    assert event["who"]["principal"] == "User:ANONYMOUS"
    assert event["command"] == f"streamline replay {path} --apply {fresh}"
    assert events[0]["plan"] == json.loads(stale.read_text())


def test_a_plan_for_another_topology_or_a_changed_one_is_refused(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, _source, _sink, _dlq = make_topology(tmp_path, kafka, unique)
    env = process_env(kafka)
    plan_file = tmp_path / "plan.json"
    made = run_cli("replay", str(path), "--to-earliest", "--plan-out", str(plan_file), env=env)
    assert made.returncode == 0, made.stderr
    path.write_text(path.read_text().replace("commit_interval: 100ms", "commit_interval: 200ms"))
    changed = run_cli("replay", str(path), "--apply", str(plan_file), env=env)
    assert changed.returncode == 2
    assert "the topology changed since the plan was made" in changed.stderr
    both = run_cli("replay", str(path), "--apply", str(plan_file), "--to-earliest", env=env)
    assert both.returncode == 2
    assert "--apply takes the plan file only" in both.stderr
    assert events_of(kafka, path.stem) == []  # nothing was attempted


def test_dlq_replay_writes_one_audit_event_with_what_it_sent(
    dead_letters: DeadLetters,  # noqa: F811 - the fixture
    kafka: Connection,
) -> None:
    done = run_cli("dlq", "replay", str(dead_letters.topology), "--error-type", "map")
    assert done.returncode == 0, done.stderr
    dry = run_cli("dlq", "replay", str(dead_letters.topology), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    events = events_of(kafka, dead_letters.topology.stem)
    assert len(events) == 1  # the dry run records nothing
    assert events[0]["action"] == "dlq-replay"
    assert events[0]["plan"] == {"dead_letter_topic": dead_letters.dlq, "error_type": "map"}
    assert events[0]["result"] == {
        "status": "applied",
        "detail": {"sent": {"map": 4}, "skipped_already_replayed": {}},
    }


@pytest.mark.parametrize("principal", ["User:orders-app"])
def test_acls_apply_records_its_failure_on_a_broker_without_an_authorizer(
    kafka: Connection, unique: str, tmp_path: Path, principal: str
) -> None:
    path, _source, _sink, _dlq = make_topology(tmp_path, kafka, unique)
    done = run_cli("acls", str(path), "--principal", principal, "--apply", env=process_env(kafka))
    assert done.returncode == 1
    events = events_of(kafka, path.stem)
    assert [(e["action"], e["result"]["status"]) for e in events] == [("acls-apply", "failed")]
    assert events[0]["plan"]["principal"] == principal
    assert events[0]["result"]["detail"] in done.stderr
