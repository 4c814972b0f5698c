"""Confluent Avro against a real Schema Registry (Apicurio), with producers and consumers
streamline does not own: confluent-kafka's AvroSerializer and AvroDeserializer.

Sizes are small in the suite; STREAMLINE_ACCEPTANCE_SCALE=full runs the issue's sizes.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamline.dev.registry import RegistryInfo
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import read_all, run_cli
from tests.support.harness import (
    ORDER_CODEC,
    SCHEMAS,
    TOPOLOGY,
    InputFeeder,
    StreamlineProcess,
    await_started,
    duplicates,
    expectation,
    order_stream,
    process_env,
    produce_orders,
)

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
STORE = SchemaStore(SCHEMAS)
ORDER_V2 = STORE.get("com.example.Order").definition
ORDER_V1 = {**ORDER_V2, "fields": [f for f in ORDER_V2["fields"] if f["name"] != "country"]}
UNKNOWN_ID = 2**31 - 7

pytestmark = pytest.mark.kafka


def serializer(client: SchemaRegistryClient, definition: dict[str, Any]) -> AvroSerializer:
    return AvroSerializer(client, json.dumps(definition))


def confluent_stream(
    client: SchemaRegistryClient, topic: str, n: int, seed: int
) -> list[tuple[bytes, bytes, str, str | None, dict[str, Any] | None]]:
    """order_stream's records written by confluent-kafka's AvroSerializer, v1 (no `country`)
    and v2 interleaved; its undecodable ones as garbage and as an unknown schema id."""
    v1, v2 = serializer(client, ORDER_V1), serializer(client, ORDER_V2)
    ctx = SerializationContext(topic, MessageField.VALUE)
    out = []
    for i, (key, value, category, rule, record) in enumerate(order_stream(n, seed)):
        if record is not None:
            if i % 2:
                record = {k: v for k, v in record.items() if k != "country"}
                value = v1(record, ctx)
                record["country"] = "DE"  # the v2 reader's default
            else:
                value = v2(record, ctx)
        elif category == "schema":
            value = b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + value[10:]
        out.append((key, value, category, rule, record))
    return out


def write_topology(
    tmp: Path,
    name: str,
    source: str,
    sink: str,
    sink_format: str,
    source_format: str = "confluent-avro",
) -> Path:
    text = TOPOLOGY.format(name=name, source=source, sink=sink, guarantee="exactly_once")
    text = text.replace(
        "      max_out_of_orderness: 5s\n",
        f"      max_out_of_orderness: 5s\n    format: {source_format}\n",
    )
    text = text.replace(
        "  schema: com.example.PaidOrder\n",
        f"  schema: com.example.PaidOrder\n  format: {sink_format}\n",
    )
    folder = tmp / "topologies"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def registry_env(kafka: Connection, registry: RegistryInfo) -> dict[str, str]:
    env = process_env(kafka)
    env["STREAMLINE_SCHEMA_REGISTRY_URL"] = registry.url
    return env


def await_count(kafka: Connection, topic: str, n: int, timeout: float, proc: Any) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = len(read_all(kafka, topic, timeout=5))
        if got >= n:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{got}/{n} records on {topic} after {timeout}s\n{proc.log()[-3000:]}")


def as_millis(value: dict[str, Any]) -> dict[str, Any]:
    out = dict(value)
    out["created_at"] = int(out["created_at"].timestamp() * 1000)
    return out


@pytest.mark.slow
def test_confluent_serializer_input_is_processed_exactly_once_and_read_back_by_the_deserializer(
    kafka: Connection, schema_registry: RegistryInfo, unique: str, tmp_path: Path
) -> None:
    n = 20_000 if FULL else 2_000
    client = SchemaRegistryClient({"url": schema_registry.url, "timeout": 30})
    name, source, sink = f"cf-{unique}", f"cf-orders-{unique}", f"cf-paid-{unique}"
    dlq = f"{name}.dlq"
    create_topics(kafka, {t: (3, {}) for t in (source, sink, dlq)})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    stream = confluent_stream(client, source, n, seed=7)
    expected = expectation(stream)
    topology = write_topology(tmp_path, name, source, sink, "confluent-avro")
    feeder = InputFeeder(kafka, source, stream, rate=n / 6)
    feeder.start()
    proc = StreamlineProcess(topology, "a", registry_env(kafka, schema_registry), tmp_path).start()
    rng = random.Random(unique)
    for _ in range(2):  # SIGKILL twice mid-stream
        await_started(proc)
        time.sleep(rng.uniform(0.5, 2.0))
        proc.kill()
        proc.start()
    feeder.join(120)
    assert feeder.error is None
    await_count(kafka, sink, len(expected.outputs), 120, proc)
    await_count(kafka, dlq, len(expected.dead_letters), 60, proc)
    await_started(proc)  # the last start has joined its group before it is stopped
    assert proc.stop() == 0

    deserialize = AvroDeserializer(client)
    outputs = read_all(kafka, sink)
    values = [
        as_millis(deserialize(m.value(), SerializationContext(sink, MessageField.VALUE)))
        for m in outputs
    ]
    assert duplicates([v["order_id"] for v in values]) == []
    assert {v["order_id"]: v for v in values} == expected.outputs
    registered = client.get_latest_version(f"{sink}-value")
    assert {m.value()[:5] for m in outputs} == {b"\x00" + registered.schema_id.to_bytes(4, "big")}

    dead = read_all(kafka, dlq)
    assert {m.value() for m in dead} == set(expected.dead_letters)
    for msg in dead:
        headers = dict(msg.headers() or [])
        category, _rule = expected.dead_letters[msg.value()]
        assert headers["streamline.error.type"] == category.encode()
        if category == "schema":
            assert f"unknown schema id {UNKNOWN_ID}".encode() in headers["streamline.error.message"]
    assert {c for c, _ in expected.dead_letters.values()} >= {"decode", "schema", "validation"}


def test_validate_registry_refuses_an_incompatible_sink_schema_in_one_line(
    schema_registry: RegistryInfo, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> None:
    client = SchemaRegistryClient({"url": schema_registry.url, "timeout": 30})
    sink = f"ev-paid-{unique}"
    subject = f"{sink}-value"
    paid = STORE.get("com.example.PaidOrder").definition
    from confluent_kafka.schema_registry import Schema

    client.register_schema(subject, Schema(json.dumps(paid), "AVRO"))
    client.set_compatibility(subject, "BACKWARD")
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "order.avsc").write_text(json.dumps(ORDER_V2))
    topology = write_topology(
        tmp_path, f"ev-{unique}", f"ev-orders-{unique}", sink, "confluent-avro"
    )
    env = dict(bootstrap_env, STREAMLINE_SCHEMA_REGISTRY_URL=schema_registry.url)

    def validate_with(extra_field: dict[str, Any]) -> Any:
        changed = copy.deepcopy(paid)
        changed["fields"].append(extra_field)
        (schemas / "paid_order.avsc").write_text(json.dumps(changed))
        return run_cli("validate", "--registry", "--schemas", str(schemas), str(topology), env=env)

    refused = validate_with({"name": "discount", "type": "double"})
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: ev-{unique}: sink schema com.example.PaidOrder is incompatible with subject "
        f"{subject}: field discount was added without a default"
    ]
    create = run_cli("topics", "create", "--schemas", str(schemas), str(topology), env=env)
    assert create.returncode == 2 and "field discount was added without a default" in create.stderr
    accepted = validate_with({"name": "discount", "type": "double", "default": 0.0})
    assert accepted.returncode == 0, accepted.stderr


def test_a_registry_unreachable_at_start_is_one_line_and_exit_1(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    from streamline.dev.broker import free_port

    topology = write_topology(
        tmp_path, f"down-{unique}", f"down-{unique}", f"down-out-{unique}", "avro"
    )
    create_topics(kafka, {f"down-{unique}": (1, {})})
    url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    env = dict(process_env(kafka), STREAMLINE_SCHEMA_REGISTRY_URL=url)
    done = run_cli("run", str(topology), "--metrics-port", "0", env=env)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: schema registry {url} is unreachable")


def test_a_registry_outage_mid_run_loses_and_dead_letters_nothing(
    kafka: Connection, schema_registry: RegistryInfo, unique: str, tmp_path: Path
) -> None:
    outage_s = 20 if FULL else 6
    n = 2_000 if FULL else 600
    client = SchemaRegistryClient({"url": schema_registry.url, "timeout": 30})
    name, source, sink = f"out-{unique}", f"out-orders-{unique}", f"out-paid-{unique}"
    dlq = f"{name}.dlq"
    create_topics(kafka, {t: (1, {}) for t in (source, sink, dlq)})
    ctx = SerializationContext(source, MessageField.VALUE)
    v1, v2 = serializer(client, ORDER_V1), serializer(client, ORDER_V2)
    records = [
        {
            "order_id": f"o-{i}",
            "customer_id": f"c-{i % 17}",
            "amount": float(i + 1),
            "currency": "EUR",
            "status": "PAID",
            "country": "FR",
            "created_at": 1767225600000 + i,
        }
        for i in range(n)
    ]
    half = n // 2
    # the second half is written with a schema id the topology has not looked up before the outage
    first = [v2(r, ctx) for r in records[:half]]
    second = [v1({k: v for k, v in r.items() if k != "country"}, ctx) for r in records[half:]]
    topology = write_topology(tmp_path, name, source, sink, "avro")
    proc = StreamlineProcess(topology, "a", registry_env(kafka, schema_registry), tmp_path).start()
    producer = Producer(kafka.config(**{"enable.idempotence": True}))

    def produce(values: list[bytes]) -> None:
        for value in values:
            producer.produce(source, key=b"k", value=value)
        assert producer.flush(30) == 0

    produce(first)
    await_count(kafka, sink, half, 90, proc)
    os.kill(schema_registry.pid, signal.SIGSTOP)
    try:
        produce(second)
        deadline = time.monotonic() + outage_s
        while time.monotonic() < deadline:
            assert len(read_all(kafka, sink, timeout=5)) == half  # processing waits
            time.sleep(1)
        while "unreachable looking up schema id" not in proc.current_log():
            assert time.monotonic() < deadline + 15, proc.current_log()[-2000:]
            time.sleep(0.5)
    finally:
        os.kill(schema_registry.pid, signal.SIGCONT)
    await_count(kafka, sink, n, 90, proc)
    port = re.search(r"metrics on http://127.0.0.1:(\d+)/metrics", proc.current_log())
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics") as response:
        metrics = response.read().decode()
    stalls = re.search(r"streamline_schema_registry_stalls_total\{[^}]*\} (\S+)", metrics)
    waited = re.search(r"streamline_schema_registry_wait_seconds_total\{[^}]*\} (\S+)", metrics)
    assert stalls and float(stalls.group(1)) >= 1
    assert waited and float(waited.group(1)) >= outage_s / 3
    assert proc.stop() == 0

    paid = AvroCodec(STORE, STORE.get("com.example.PaidOrder"))
    values = [paid.decode(m.value()) for m in read_all(kafka, sink)]
    expected = [
        {
            "order_id": r["order_id"],
            "customer_id": r["customer_id"],
            "amount_eur": r["amount"],
            "country": "FR" if i < half else "DE",
            "created_at": r["created_at"],
        }
        for i, r in enumerate(records)
    ]
    assert values == expected  # one partition: in order, nothing lost, nothing twice
    assert read_all(kafka, dlq) == []


def test_produce_and_consume_json_and_confluent_avro(  # type: ignore[no-untyped-def]
    bootstrap_env, make_topic, schema_registry: RegistryInfo, kafka: Connection
) -> None:
    from tests.helpers import ROOT, json_lines

    orders = ROOT / "examples" / "orders.jsonl"
    expected = [json.loads(line) for line in orders.read_text().splitlines()]
    env = dict(bootstrap_env, STREAMLINE_SCHEMA_REGISTRY_URL=schema_registry.url)
    for fmt in ("json", "confluent-avro"):
        topic = make_topic(f"fmt-{fmt}")
        produced = run_cli(
            "produce", topic, "--schema", "com.example.Order", "--file", str(orders),
            "--format", fmt, env=env,
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        read_as = ["--format", "json"] if fmt == "json" else []  # confluent-avro: told by its 00
        consumed = run_cli(
            "consume", topic, "--from-beginning", "--max", str(len(expected)), "--timeout", "20",
            *read_as, env=env,
        )  # fmt: skip
        assert consumed.returncode == 0, consumed.stderr
        assert [r["value"] for r in json_lines(consumed.stdout)] == expected
        raw = [m.value() for m in read_all(kafka, topic)]
        if fmt == "json":
            assert [json.loads(v) for v in raw] == expected
        else:  # confluent-kafka's own deserializer reads what produce wrote
            deserialize = AvroDeserializer(
                SchemaRegistryClient({"url": schema_registry.url, "timeout": 30})
            )
            ctx = SerializationContext(topic, MessageField.VALUE)
            assert [as_millis(deserialize(v, ctx)) for v in raw] == expected


def test_a_json_topic_with_invalid_values_dead_letters_each_with_its_json_path(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    n = 100_000 if FULL else 1_000
    name, source, sink = f"js-{unique}", f"js-orders-{unique}", f"js-paid-{unique}"
    dlq = f"{name}.dlq"
    create_topics(kafka, {t: (2, {}) for t in (source, sink, dlq)})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    stream = []
    expected: dict[str, dict[str, Any]] = {}
    invalid: dict[bytes, str] = {}
    for i in range(n):
        record: dict[str, Any] = {
            "order_id": f"o-{i}",
            "customer_id": f"c-{i % 13}",
            "amount": 10.0 + i,
            "currency": "EUR",
            "status": "PAID",
            "country": "NL",
            "created_at": "2026-01-01T00:00:00.250Z" if i % 2 else 1767225600250,
        }
        if i % 100 == 42:  # 1% invalid
            record["amount"] = str(record["amount"])
            invalid[json.dumps(record).encode()] = "$.amount: expected number, got string"
        elif i % 100 == 77:
            del record["customer_id"]
            invalid[json.dumps(record).encode()] = "$.customer_id: missing required field"
        else:
            expected[record["order_id"]] = {
                "order_id": record["order_id"],
                "customer_id": record["customer_id"],
                "amount_eur": record["amount"],
                "country": "NL",
                "created_at": 1767225600250,
            }
        stream.append((f"c-{i % 13}".encode(), json.dumps(record).encode()))
    topology = write_topology(tmp_path, name, source, sink, "json", source_format="json")
    proc = StreamlineProcess(topology, "a", process_env(kafka), tmp_path).start()
    producer = Producer(kafka.config(**{"enable.idempotence": True, "linger.ms": 5}))
    for key, value in stream:
        producer.produce(source, key=key, value=value)
        producer.poll(0)
    assert producer.flush(60) == 0
    await_count(kafka, sink, len(expected), 120, proc)
    await_count(kafka, dlq, len(invalid), 60, proc)
    assert proc.stop() == 0
    values = [json.loads(m.value()) for m in read_all(kafka, sink)]
    assert len(values) == len(expected)
    assert {v["order_id"]: v for v in values} == expected
    dead = read_all(kafka, dlq)
    assert len(dead) == len(invalid)
    for msg in dead:
        headers = dict(msg.headers() or [])
        assert headers["streamline.error.type"] == b"decode"
        assert headers["streamline.error.message"].decode() == invalid[msg.value()]


def test_without_auto_register_the_sink_schema_must_be_there(
    schema_registry: RegistryInfo, unique: str
) -> None:
    from streamline.errors import UsageError
    from streamline.kafka.registry import Registry

    registry = Registry({"url": schema_registry.url})
    paid = STORE.get("com.example.PaidOrder")
    with pytest.raises(UsageError, match=f"not registered under subject ar-{unique}-value"):
        registry.sink_schema_id(f"ar-{unique}-value", paid, auto_register=False)
    registered = registry.sink_schema_id(f"ar-{unique}-value", paid, auto_register=True)
    assert registry.sink_schema_id(f"ar-{unique}-value", paid, auto_register=False) == registered
    assert registry.sink_schema_id(paid.name, paid, auto_register=True) > 0  # record strategy


ROUTED = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 5s}}
stages:
  - route:
      - when: "country == 'DE'"
        to: de
      - otherwise: rest
sinks:
  rest:
    topic: {source}-rest
    schema: com.example.Order
  de:
    topic: {source}-de
    schema: com.example.Order
    format: confluent-avro
commit_interval: 100ms
"""


def test_a_route_sink_in_confluent_avro_is_registered_and_read_by_the_deserializer(
    kafka: Connection, schema_registry: RegistryInfo, unique: str, tmp_path: Path
) -> None:
    name, source = f"cfr-{unique}", f"cfr-orders-{unique}"
    create_topics(kafka, {t: (2, {}) for t in (source, f"{source}-de", f"{source}-rest")})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    path = tmp_path / f"{name}.yaml"
    path.write_text(ROUTED.format(name=name, source=source))
    orders = produce_orders(kafka, source, 60)
    codec = ORDER_CODEC

    without = run_cli(
        "run", str(path), "--until-caught-up", "--max-wait", "60s", "--metrics-port", "0",
        "--state-dir", str(tmp_path / "state"), env=process_env(kafka),
    )  # fmt: skip
    assert without.returncode == 2, without.stderr[-3000:]
    assert without.stderr.strip().splitlines() == [
        "error: format confluent-avro needs a schema registry: give --schema-registry-url "
        "or STREAMLINE_SCHEMA_REGISTRY_URL"
    ]
    done = run_cli(
        "run", str(path), "--until-caught-up", "--max-wait", "60s", "--metrics-port", "0",
        "--state-dir", str(tmp_path / "state"), env=registry_env(kafka, schema_registry),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    client = SchemaRegistryClient({"url": schema_registry.url, "timeout": 30})
    deserialize = AvroDeserializer(client)
    ctx = SerializationContext(f"{source}-de", MessageField.VALUE)
    de = read_all(kafka, f"{source}-de")
    values = sorted((as_millis(deserialize(m.value(), ctx)) for m in de), key=str)
    assert values == sorted((o for o in orders if o["country"] == "DE"), key=str)
    registered = client.get_latest_version(f"{source}-de-value")
    assert {m.value()[:5] for m in de} == {b"\x00" + registered.schema_id.to_bytes(4, "big")}
    rest = sorted((codec.decode(m.value()) for m in read_all(kafka, f"{source}-rest")), key=str)
    assert rest == sorted((o for o in orders if o["country"] != "DE"), key=str)
