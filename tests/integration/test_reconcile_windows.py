"""`reconcile` of a windowed topology: every input in a fired window's range, in a window not
fired yet, a dead letter, a late record or a counted drop; deleted results are found."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamline.kafka.connection import Connection
from tests.helpers import read_all, run_cli
from tests.integration.test_windows import ORDER, REVENUE, Scenario
from tests.support.harness import await_started, crash_repeatedly
from tests.support.windows_oracle import Event, events

pytestmark = pytest.mark.slow

MINUTE = 60_000


def produce(
    kafka: Connection, topic: str, evts: list[Event], pending: set[int], bad: set[int]
) -> None:
    producer = Producer(kafka.config(**{"enable.idempotence": True, "linger.ms": 20}))
    for i, e in enumerate(evts):
        value = ORDER.encode(
            {
                "order_id": e.order_id, "customer_id": e.key, "amount": e.amount,
                "currency": "EUR", "status": "PENDING" if i in pending else "PAID",
                "country": "DE", "created_at": e.t,
            },
            check=False,
        )  # fmt: skip
        producer.produce(topic, key=e.key.encode(), value=b"garbage" if i in bad else value)
    assert producer.flush(60) == 0


def test_windowed_reconcile_balances_after_crashes_and_names_deleted_results(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "tumbling")
    evts = events(2500, keys=30, step_ms=30, disorder_ms=1000)
    pending = {i for i in range(len(evts)) if i % 13 == 0}
    bad = {i for i in range(len(evts)) if i % 97 == 5}
    produce(kafka, scenario.source, evts, pending, bad)
    proc = scenario.process("a").start()
    crash_repeatedly(proc, random.Random(unique), times=2)
    await_started(proc)
    assert proc.stop() == 0, proc.log()[-3000:]
    oldest = min(e.t for e in evts)  # far behind every partition's watermark: late
    late = [
        Event(e.key, f"late-{i}", e.amount, oldest, seq=-1 - i) for i, e in enumerate(evts[:40])
    ]
    produce(kafka, scenario.source, late, set(), set())
    done = run_cli(
        "run", str(scenario.path), "--until-caught-up", "--max-wait", "2m", "--instance-id", "a",
        "--metrics-port", "0", "--state-dir", str(tmp_path / "state" / "a"), env=scenario.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    result = run_cli("reconcile", str(scenario.path), "--since", "1h", "--json", env=scenario.env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    totals = report["totals"]
    assert report["windowed"] is True and report["balanced"] is True
    assert totals["inputs"] == len(evts) + len(late)
    assert totals["dead_letters"] == len(bad)
    assert totals["late"] == len(late)
    filtered = len(pending - bad)
    assert report["drops_by_reason"] == {"filter": filtered}
    assert totals["unexplained"] == 0 and totals["dropped"] <= filtered
    assert (
        totals["in_windows"] + totals["open_windows"] + totals["dropped"]
        + totals["dead_letters"] + totals["late"]
    ) == totals["inputs"]  # fmt: skip
    results = read_all(kafka, scenario.sink, timeout=30)
    assert totals["outputs"] == len(results)
    # independently: valid records whose window ends after the partition's last fired one
    fired_end: dict[int, int] = {}
    for msg in results:
        p = int(dict(msg.headers())["streamline.source"].decode().rsplit("/", 2)[1])
        fired_end[p] = max(fired_end.get(p, 0), REVENUE.decode(msg.value())["window_end"])
    where = {m.key().decode(): m.partition() for m in read_all(kafka, scenario.source)}
    waiting = sum(
        1
        for i, e in enumerate(evts)
        if i not in bad and e.t - e.t % MINUTE + MINUTE > fired_end[where[e.key]]
    )
    assert totals["open_windows"] == waiting > 0

    # an outside tool deletes committed window results of sink partition 0
    in_zero = sorted(m.offset() for m in results if m.partition() == 0)
    cut = in_zero[len(in_zero) // 2]
    admin = AdminClient(kafka.config(log_level=0))
    for future in admin.delete_records([TopicPartition(scenario.sink, 0, cut)]).values():
        future.result(30)
    broken = run_cli("reconcile", str(scenario.path), "--since", "1h", env=scenario.env)
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert f"{scenario.sink}/0: committed offsets {in_zero[0]}-{cut - 1} are gone" in broken.stderr
    assert "window results" in broken.stdout and "open windows" in broken.stdout


def test_session_windows_are_refused_as_not_supported_yet(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, "session")
    refused = run_cli("reconcile", str(scenario.path), "--since", "1h", env=scenario.env)
    assert refused.returncode == 2
    assert "is not supported yet: windowed topologies with session windows" in refused.stderr
