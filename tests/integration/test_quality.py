"""Data quality end to end: warn rules and their metrics, checksums, and `reconcile` after crashes."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.reliability.checksum import value_checksum
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import read_all, run_cli
from tests.support.harness import (
    SCHEMAS,
    InputFeeder,
    StreamlineProcess,
    crash_repeatedly,
    expectation,
    make_topology,
    order_stream,
    process_env,
)

STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 5s}}
    verify_checksum: {verify}
stages:
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
        - name: known_country
          expr: "country in ['DE', 'FR']"
          severity: warn
sink:
  topic: {sink}
  schema: com.example.Order
  checksum: true
commit_interval: 100ms
quality:
  track_nulls: [country]
"""


def order(i: int, amount: float, country: str) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i % 7}",
        "amount": amount,
        "currency": "EUR",
        "status": "PAID",
        "country": country,
        "created_at": 1767225600000 + i,
    }


def setup(
    tmp_path: Path, kafka: Connection, unique: str, verify: bool
) -> tuple[Path, str, str, str]:
    name = f"quality-{unique}"
    source, sink, dlq = f"orders-{unique}", f"checked-{unique}", f"{name}.dlq"
    folder = tmp_path / "topologies"
    folder.mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(
        TOPOLOGY.format(name=name, source=source, sink=sink, verify=str(verify).lower())
    )
    create_topics(kafka, {t: (2, {}) for t in (source, sink, dlq)})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    return path, source, sink, dlq


def produce(kafka: Connection, topic: str, records: list[tuple[bytes, list[Any] | None]]) -> None:
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for i, (value, headers) in enumerate(records):
        producer.produce(topic, key=str(i).encode(), value=value, headers=headers)
    assert producer.flush(30) == 0


def await_records(kafka: Connection, topic: str, n: int, proc: StreamlineProcess) -> list[Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = read_all(kafka, topic, timeout=5)
        if len(got) >= n:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{topic}: fewer than {n} records\n{proc.log()[-3000:]}")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_warn_rules_mark_outputs_and_per_rule_metrics_match_an_oracle(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, sink, dlq = setup(tmp_path, kafka, unique, verify=False)
    rng = random.Random(unique)
    orders = [
        order(i, rng.choice([12.5, 80.0, -3.0]), rng.choice(["DE", "FR", "US", "NL"]))
        for i in range(600)
    ]
    oracle_error = sum(1 for o in orders if o["amount"] <= 0)
    warned = {o["order_id"] for o in orders if o["amount"] > 0 and o["country"] not in ("DE", "FR")}
    produce(kafka, source, [(ORDER.encode(o), None) for o in orders])
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    port = proc.metrics_port
    try:
        outputs = await_records(kafka, sink, len(orders) - oracle_error, proc)
        dead = await_records(kafka, dlq, oracle_error, proc)
        deadline = time.monotonic() + 30
        name = f"quality-{unique}"
        stage = "stages[0].validate"

        def metric(rule: str, severity: str) -> float | None:
            labels = {"topology": name, "stage": stage, "rule": rule, "severity": severity}
            key = ("streamline_validation_failures_total", frozenset(labels.items()))
            return scrape(port).get(key)

        while time.monotonic() < deadline and metric("known_country", "warn") != len(warned):
            time.sleep(0.5)
        assert metric("known_country", "warn") == len(warned)
        assert metric("amount_positive", "error") == oracle_error
        samples = scrape(port)
        ratio = samples[
            ("streamline_quality_ratio", frozenset({"topology": name, "stage": stage}.items()))
        ]
        assert ratio == pytest.approx((len(orders) - oracle_error - len(warned)) / len(orders))
        null_ratio = samples[
            (
                "streamline_field_null_ratio",
                frozenset({"topology": name, "field": "country"}.items()),
            )
        ]
        assert null_ratio == 0
    finally:
        assert proc.stop() == 0

    assert len(outputs) == len(orders) - oracle_error and len(dead) == oracle_error
    marked: set[str] = set()
    for msg in outputs:
        headers = dict(msg.headers() or [])
        value = ORDER.decode(msg.value())
        if "streamline.quality.warnings" in headers:
            assert headers["streamline.quality.warnings"] == b"known_country"
            marked.add(value["order_id"])
        assert headers["streamline.checksum"] == value_checksum(msg.value())  # sink.checksum
    assert marked == warned
    assert {dict(m.headers())["streamline.error.rule"] for m in dead} == {b"amount_positive"}


def test_records_whose_bytes_do_not_match_their_checksum_become_integrity_dead_letters(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, sink, dlq = setup(tmp_path, kafka, unique, verify=True)
    orders = [order(i, 10.0, "DE") for i in range(200)]
    tampered = set(range(5, 200, 20))  # 10 records
    records = []
    for i, o in enumerate(orders):
        value = ORDER.encode(o)
        stamped = value_checksum(value)
        if i in tampered:  # bytes altered after the checksum was taken
            value = ORDER.encode({**o, "amount": 9999.0})
        records.append((value, [("streamline.checksum", stamped)]))
    produce(kafka, source, records)
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    try:
        outputs = await_records(kafka, sink, 190, proc)
        dead = await_records(kafka, dlq, 10, proc)
    finally:
        assert proc.stop() == 0
    assert len(outputs) == 190 and len(dead) == 10
    assert {ORDER.decode(m.value())["order_id"] for m in dead} == {f"o-{i}" for i in tampered}
    for msg in dead:
        headers = dict(msg.headers() or [])
        assert headers["streamline.error.type"] == b"integrity"
        assert headers["streamline.error.stage"] == b"checksum"
    assert {ORDER.decode(m.value())["order_id"] for m in outputs} == {
        f"o-{i}" for i in range(200) if i not in tampered
    }


def test_produce_checksum_stamps_the_sha256_of_each_value(
    kafka: Connection, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> None:
    topic = f"stamped-{unique}"
    create_topics(kafka, {topic: (1, {})})
    lines = tmp_path / "orders.jsonl"
    lines.write_text("\n".join(json.dumps(order(i, 5.0, "DE")) for i in range(3)) + "\n")
    result = run_cli(
        "produce", topic, "--schema", "com.example.Order", "-f", str(lines), "--checksum",
        env=bootstrap_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = read_all(kafka, topic, expected=3)
    assert len(got) == 3
    for msg in got:
        assert dict(msg.headers())["streamline.checksum"] == value_checksum(msg.value())


@pytest.mark.slow
def test_reconcile_balances_after_crashes_and_names_deleted_outputs(
    kafka: Connection, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(12_000)
    expected = expectation(stream)
    feeder = InputFeeder(kafka, source, stream, 3000)
    feeder.start()
    proc = StreamlineProcess(topology, "a", process_env(kafka), tmp_path).start()
    crash_repeatedly(proc, random.Random(unique), times=2)
    feeder.join(120)
    assert feeder.error is None
    await_records(kafka, sink, len(expected.outputs), proc)
    await_records(kafka, dlq, len(expected.dead_letters), proc)
    assert proc.stop() == 0

    result = run_cli("reconcile", str(topology), "--since", "1h", "--json", env=bootstrap_env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["balanced"] is True
    totals = report["totals"]
    # independent counts: the stream's own categories (the harness's oracle)
    assert totals["inputs"] == len(stream)
    assert totals["outputs"] == len(expected.outputs)
    assert totals["dead_letters"] == len(expected.dead_letters)
    assert totals["dropped"] == expected.filtered
    assert totals["unexplained"] == totals["retry_waiting"] == 0
    assert report["drops_by_reason"] == {"filter": expected.filtered}
    per_type: dict[str, int] = {}
    for p in report["partitions"]:
        for t, n in p["dead_letters"].items():
            per_type[t] = per_type.get(t, 0) + n
    oracle: dict[str, int] = {}
    for category, _rule in expected.dead_letters.values():
        oracle[category] = oracle.get(category, 0) + 1
    assert per_type == oracle

    table = run_cli("reconcile", str(topology), "--since", "1h", env=bootstrap_env)
    assert table.returncode == 0 and "balanced" in table.stdout

    # an outside tool deletes committed outputs of sink partition 0
    low_high = read_all(kafka, sink)
    in_zero = sorted(m.offset() for m in low_high if m.partition() == 0)
    cut = in_zero[len(in_zero) // 2]
    admin = AdminClient(kafka.config(log_level=0))
    for future in admin.delete_records([TopicPartition(sink, 0, cut)]).values():
        future.result(30)
    broken = run_cli("reconcile", str(topology), "--since", "1h", env=bootstrap_env)
    assert broken.returncode == 3, broken.stdout + broken.stderr
    assert f"{sink}/0: committed offsets {in_zero[0]}-{cut - 1} are gone" in broken.stderr
    assert "input records unexplained, first:" in broken.stderr
    lost = run_cli("reconcile", str(topology), "--since", "1h", "--json", env=bootstrap_env)
    lost_report = json.loads(lost.stdout)
    assert lost.returncode == 3
    assert lost_report["totals"]["outputs"] == len(expected.outputs) - sum(
        1 for o in in_zero if o < cut
    )
