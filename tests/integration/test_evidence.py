"""`streamline evidence export`: row counts equal what the run produced, hashes match the files."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from streamline.kafka.connection import Connection
from streamline.serde import SchemaStore
from streamline.topology import check_topology, load_topology
from tests.helpers import read_all, run_cli
from tests.support.harness import SCHEMAS, expectation, make_topology, order_stream, process_env


def rows_of(path: Path) -> list[dict[str, Any]]:
    """The file's rows, read with a reader streamline does not own."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(
    kafka: Connection, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], dict[str, Any], Any]:
    """A bounded run with dead letters, then a reviewed replay plan applied: (topology,
    env, independent counts, expectation)."""
    import uuid

    tmp = tmp_path_factory.mktemp("evidence")
    unique = uuid.uuid4().hex[:10]
    path, source, _sink, dlq = make_topology(tmp, kafka, unique)
    path.write_text(path.read_text() + "freshness:\n  heartbeat_interval: 300ms\n")
    env = process_env(kafka)
    stream = order_stream(2000)
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for key, value, *_rest in stream:
        producer.produce(source, key=key, value=value)
    assert producer.flush(30) == 0
    done = run_cli(
        "run", str(path), "--until-caught-up", "--metrics-port", "0",
        "--state-dir", str(tmp / "state"), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    plan = tmp / "plan.json"
    made = run_cli("replay", str(path), "--to-earliest", "--plan-out", str(plan), env=env)
    assert made.returncode == 0, made.stderr
    applied = run_cli("replay", str(path), "--apply", str(plan), env=env)
    assert applied.returncode == 0, applied.stderr

    name = path.stem
    lineage = [
        m for m in read_all(kafka, "streamline.lineage", timeout=30) if m.key() == name.encode()
    ]
    beats = [
        json.loads(m.value())
        for m in read_all(kafka, "streamline.heartbeats", isolation="read_uncommitted", timeout=30)
    ]
    audit = [
        json.loads(m.value())
        for m in read_all(kafka, "streamline.audit", timeout=30)
        if m.key() == name.encode()
    ]
    counts = {
        "lineage": len(lineage),
        "dead_letters": len(read_all(kafka, dlq, timeout=30)),
        "sla_history": sum(len(b["partitions"]) for b in beats if b["topology"] == name),
        "audit": len(audit),
        "audit_events": audit,
        "plan": json.loads(plan.read_text()),
    }
    return path, env, counts, expectation(stream)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_row_counts_equal_the_topics_and_the_manifest_hashes_match(
    finished_run: tuple[Path, dict[str, Any], dict[str, Any], Any], tmp_path: Path, fmt: str
) -> None:
    path, env, counts, expected = finished_run
    out = tmp_path / "evidence"
    done = run_cli(
        "evidence", "export", str(path), "--since", "1h", "--out", str(out), "--format", fmt,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(
        f"{t}.{fmt}" for t in ("lineage", "dead_letters", "sla_history", "audit")
    )
    for name, entry in manifest["files"].items():
        file = out / name
        assert hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]
        assert len(rows_of(file)) == entry["rows"]
        assert entry["rows"] == counts[entry["table"]], name
    assert counts["lineage"] > 0 and counts["sla_history"] > 0
    assert counts["dead_letters"] == len(expected.dead_letters)
    assert manifest["topology"] == path.stem
    assert manifest["fingerprint"] == counts["plan"]["fingerprint"]
    assert set(manifest["schemas"]) == {"com.example.Order", "com.example.PaidOrder"}

    letters = rows_of(out / f"dead_letters.{fmt}")
    assert Counter(r["error_type"] for r in letters) == Counter(
        category for category, _rule in expected.dead_letters.values()
    )
    decoded = [r for r in letters if r["error_type"] in ("validation", "map")]
    assert decoded and all(r["value"] and json.loads(r["value"])["order_id"] for r in decoded)
    assert all(r["value_base64"] for r in letters if r["error_type"] == "decode")
    assert all(r["reason"] for r in letters)

    (audit,) = rows_of(out / f"audit.{fmt}")
    assert audit["id"] == counts["audit_events"][0]["id"]
    assert audit["action"] == "replay" and audit["status"] == "applied"
    assert json.loads(audit["plan"]) == counts["plan"]

    lineage = rows_of(out / f"lineage.{fmt}")
    pinned = check_topology(load_topology(path), SchemaStore(SCHEMAS)).fingerprint
    assert manifest["fingerprint"] == pinned
    assert {r["fingerprint"] for r in lineage} == {pinned}  # the run fingerprint, pinned
    inputs = sum(int(r["records"]) for r in lineage)
    assert inputs == len(order_stream(2000))  # every input once, in some transaction


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    topology = Path(__file__).resolve().parents[2] / "topologies" / "paid-orders.yaml"
    done = run_cli("evidence", "export", str(topology), "--out", str(tmp_path), "--format", "xml")
    assert done.returncode == 2
    assert "--format xml: expected one of parquet, csv, jsonl" in done.stderr
