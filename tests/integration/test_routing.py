"""Routing under SIGKILLs: a typed map, then a route with three branches (one a fan-out) and
`otherwise`; every sink topic equals its oracle, nothing duplicated, nothing unrouted."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import read_all, run_cli
from tests.support.harness import (
    RATES,
    SCHEMAS,
    InputFeeder,
    StreamlineProcess,
    crash_repeatedly,
    duplicates,
    order_stream,
    process_env,
)
from tests.support.route_maps import misfits

pytestmark = pytest.mark.slow

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
N_RECORDS = 100_000 if FULL else 10_000
PAID_ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.PaidOrder"))
SINKS = ("de", "fr", "audit", "big", "rest")

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 5s}}}}
stages:
  - validate:
      rules:
        - {{name: amount_positive, expr: "amount > 0.0"}}
        - {{name: known_currency, expr: "currency in ['EUR', 'USD']"}}
  - filter: "status == 'PAID'"
  - map: {{fn: tests.support.route_maps:to_eur_typed, output: com.example.PaidOrder}}
  - route:
      - {{when: "country == 'DE'", to: de}}
      - {{when: "country == 'FR'", to: [fr, audit]}}
      - {{when: "amount_eur > 400.0", to: big}}
      - {{otherwise: rest}}
sinks:
{sinks}
commit_interval: 100ms
retry:
  attempts: 3
  backoff: {{initial: 1ms, multiplier: 1.0, max: 1ms, jitter: false}}
"""


def oracle(
    stream: list[tuple[bytes, bytes, str, str | None, dict[str, Any] | None]],
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[bytes, str]]:
    """(sink -> order id -> PaidOrder, dead-letter bytes -> error type), without the runtime."""
    outputs: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SINKS}
    dead: dict[bytes, str] = {}
    for _key, value, category, _rule, record in stream:
        if category != "ok":
            dead[value] = category
            continue
        assert record is not None
        if record["status"] != "PAID":
            continue
        if misfits(record["order_id"]):
            dead[value] = "schema"
            continue
        paid = {
            "order_id": record["order_id"],
            "customer_id": record["customer_id"],
            "amount_eur": record["amount"] * RATES[record["currency"]],
            "country": record["country"],
            "created_at": record["created_at"],
        }
        if paid["country"] == "DE":
            targets = ["de"]
        elif paid["country"] == "FR":
            targets = ["fr", "audit"]
        elif paid["amount_eur"] > 400.0:
            targets = ["big"]
        else:
            targets = ["rest"]
        for t in targets:
            outputs[t][paid["order_id"]] = paid
    return outputs, dead


def test_routed_outputs_stay_exact_through_sigkills(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    name, source = f"route-{unique}", f"orders-{unique}"
    topics = {sink: f"{sink}-{unique}" for sink in SINKS}
    sinks = "\n".join(
        f"  {sink}: {{topic: {topic}, schema: com.example.PaidOrder}}"
        for sink, topic in topics.items()
    )
    path = tmp_path / "topologies" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_text(TOPOLOGY.format(name=name, source=source, sinks=sinks))
    env = process_env(kafka)
    # the source is not created by `topics create`; everything the topology writes is
    from streamline.kafka.admin import create_topics

    create_topics(kafka, {source: (3, {})})
    created = run_cli("topics", "create", str(path), "--partitions", "3", env=env)
    assert created.returncode == 0, created.stderr
    for topic in topics.values():
        assert topic in created.stdout
    acls = run_cli("acls", str(path), "--principal", "User:router", env=env)
    assert acls.returncode == 0, acls.stderr
    for topic in topics.values():
        assert topic in acls.stdout

    stream = order_stream(N_RECORDS, seed=7)
    want, want_dead = oracle(stream)
    feeder = InputFeeder(kafka, source, stream, rate=5000)
    feeder.start()
    proc = StreamlineProcess(path, "a", env, tmp_path).start()
    crash_repeatedly(proc, random.Random(unique))
    feeder.join(120)
    assert feeder.error is None

    dlq = f"{name}.dlq"
    expected_total = sum(len(v) for v in want.values())
    deadline = time.monotonic() + 180
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {s: len(read_all(kafka, t, timeout=5)) for s, t in topics.items()}
        counts["dlq"] = len(read_all(kafka, dlq, timeout=5))
        if sum(counts[s] for s in SINKS) >= expected_total and counts["dlq"] >= len(want_dead):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"{counts} after 180s\n{proc.log()[-3000:]}")
    assert proc.stop() == 0

    for sink, topic in topics.items():
        messages = read_all(kafka, topic)
        values = [PAID_ORDER.decode(m.value()) for m in messages]
        assert duplicates([v["order_id"] for v in values]) == [], sink
        assert {v["order_id"]: v for v in values} == want[sink], sink
        for msg, value in zip(messages, values, strict=True):
            assert msg.key() == value["customer_id"].encode()
    dead = read_all(kafka, dlq)
    assert duplicates([m.value() for m in dead]) == []  # type: ignore[arg-type]
    got_dead = {m.value(): dict(m.headers() or [])["streamline.error.type"].decode() for m in dead}
    assert got_dead == want_dead
    at_map = [
        dict(m.headers() or [])
        for m in dead
        if dict(m.headers() or [])["streamline.error.type"] == b"schema"
        and dict(m.headers() or [])["streamline.error.stage"] == b"stages[2].map"
    ]
    assert len(at_map) == sum(1 for t in want_dead.values() if t == "schema") - sum(
        1 for _k, _v, category, _r, _rec in stream if category == "schema"
    )
    assert at_map and all(h["streamline.error.field"] == b"amount_eur" for h in at_map)
    assert "unrouted" not in proc.log()
    assert all(want[s] for s in SINKS) and len(want["fr"]) == len(want["audit"])
