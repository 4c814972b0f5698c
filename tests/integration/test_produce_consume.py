"""`streamline produce` and `streamline consume` against the real broker."""

from __future__ import annotations

import json
import time

from confluent_kafka import Producer

from streamline.dev.broker import free_port
from streamline.kafka.connection import Connection
from tests.helpers import ROOT, json_lines, read_all, run_cli

ORDERS = ROOT / "examples" / "orders.jsonl"


def test_produced_records_come_back_identical(bootstrap_env, make_topic) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("orders", partitions=3)
    produced = run_cli(
        "produce",
        topic,
        "--schema",
        "com.example.Order",
        "--file",
        str(ORDERS),
        "--key-field",
        "customer_id",
    )
    assert produced.returncode == 0, produced.stderr
    assert f"sent 200 records to {topic}" in produced.stderr

    consumed = run_cli("consume", topic, "--from-beginning", "--max", "200", "--timeout", "20")
    assert consumed.returncode == 0, consumed.stderr
    lines = json_lines(consumed.stdout)
    expected = [json.loads(line) for line in ORDERS.read_text().splitlines()]
    assert sorted((r["value"] for r in lines), key=lambda v: v["order_id"]) == expected
    assert all(r["schema"] == "com.example.Order" for r in lines)
    assert all(r["key"] == r["value"]["customer_id"] for r in lines)


def test_invalid_lines_are_reported_by_number_and_not_sent(
    bootstrap_env, make_topic, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("orders")
    good = ORDERS.read_text().splitlines()[:3]
    bad_type = json.loads(good[0]) | {"amount": "lots"}
    missing = {k: v for k, v in json.loads(good[1]).items() if k != "currency"}
    source = tmp_path / "mixed.jsonl"
    source.write_text(
        "\n".join(
            [good[0], json.dumps(bad_type), "{not json", good[1], json.dumps(missing), good[2]]
        )
        + "\n"
    )
    produced = run_cli("produce", topic, "--schema", "com.example.Order", "--file", str(source))
    assert produced.returncode == 2
    assert "line 2: field com.example.Order.amount" in produced.stderr
    assert "line 3: not valid JSON" in produced.stderr
    assert "line 5: field com.example.Order.currency" in produced.stderr
    assert "sent 3 records" in produced.stderr
    assert "Traceback" not in produced.stderr

    consumed = run_cli("consume", topic, "--from-beginning", "--max", "3", "--timeout", "20")
    assert [r["value"]["order_id"] for r in json_lines(consumed.stdout)] == [
        json.loads(line)["order_id"] for line in good
    ]


def test_csv_values_are_converted_to_schema_types(bootstrap_env, make_topic) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("orders")
    produced = run_cli(
        "produce",
        topic,
        "--schema",
        "com.example.Order",
        "--file",
        str(ROOT / "examples" / "orders.csv"),
    )
    assert produced.returncode == 0, produced.stderr
    consumed = run_cli("consume", topic, "--from-beginning", "--max", "3", "--timeout", "20")
    values = [r["value"] for r in json_lines(consumed.stdout)]
    assert values[1] == {
        "order_id": "o-csv-2",
        "customer_id": "c-2",
        "amount": 99.0,
        "currency": "USD",
        "status": "PAID",
        "country": "FR",
        "created_at": 1767225602500,
    }
    assert values[2]["created_at"] == 1767225603000


def test_garbage_bytes_are_printed_as_base64_and_reading_goes_on(  # type: ignore[no-untyped-def]
    bootstrap_env, kafka: Connection, make_topic
) -> None:
    topic = make_topic("mixed")
    run_cli(
        "produce", topic, "--schema", "com.example.Order", stdin=ORDERS.read_text().splitlines()[0]
    )
    producer = Producer(kafka.config())
    producer.produce(topic, value=b"\x00\xffgarbage")
    producer.flush(10)
    run_cli(
        "produce", topic, "--schema", "com.example.Order", stdin=ORDERS.read_text().splitlines()[1]
    )

    consumed = run_cli(
        "consume", topic, "--from-beginning", "--max", "3", "--timeout", "20", "--headers"
    )
    lines = json_lines(consumed.stdout)
    assert len(lines) == 3
    assert lines[1]["value_base64"] == "AP9nYXJiYWdl"
    assert "not single-object encoded" in lines[1]["note"]
    assert lines[2]["value"]["order_id"] == "o-0001"


def test_unreachable_broker_fails_fast_with_the_address(bootstrap_env) -> None:  # type: ignore[no-untyped-def]
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    produced = run_cli(
        "produce",
        "orders",
        "--schema",
        "com.example.Order",
        "--file",
        str(ORDERS),
        "--bootstrap-servers",
        address,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert produced.returncode == 1
    lines = produced.stderr.strip().splitlines()
    assert len(lines) == 1, produced.stderr
    assert address in lines[0]
    assert "Traceback" not in produced.stderr


def test_missing_topic_is_named(bootstrap_env, unique) -> None:  # type: ignore[no-untyped-def]
    produced = run_cli(
        "produce", f"nope-{unique}", "--schema", "com.example.Order", "--file", str(ORDERS)
    )
    assert produced.returncode == 1
    assert f"topic nope-{unique} does not exist" in produced.stderr


def test_unknown_schema_is_bad_input(bootstrap_env, make_topic) -> None:  # type: ignore[no-untyped-def]
    produced = run_cli(
        "produce", make_topic("x"), "--schema", "com.example.Nope", "--file", str(ORDERS)
    )
    assert produced.returncode == 2
    assert "unknown schema com.example.Nope; known:" in produced.stderr


def test_read_all_helper_agrees_with_consume(kafka: Connection, bootstrap_env, make_topic) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("orders")
    run_cli("produce", topic, "--schema", "com.example.Order", "--file", str(ORDERS))
    assert len(read_all(kafka, topic)) == 200


def test_a_file_carries_its_lineage_headers_and_is_refused_a_second_time_unless_forced(
    bootstrap_env, make_topic, kafka, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    topic = make_topic("orders")
    source = tmp_path / "three.jsonl"
    source.write_text("\n".join(ORDERS.read_text().splitlines()[:3]) + "\n")
    args = ("produce", topic, "--schema", "com.example.Order", "--file", str(source))
    assert run_cli(*args).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 2
    assert f"was produced to {topic} at" in again.stderr
    assert "3 records (partition 0 offsets 0-2); pass --force" in again.stderr
    assert run_cli(*args, "--force").returncode == 0

    records = read_all(kafka, topic, expected=6)
    digest = hashlib.sha256(source.read_bytes()).hexdigest().encode()
    assert [dict(m.headers() or [])["streamline.ingest.line"] for m in records] == [
        b"1",
        b"2",
        b"3",
        b"1",
        b"2",
        b"3",
    ]
    assert {dict(m.headers() or [])["streamline.ingest.sha256"] for m in records} == {digest}
    assert {dict(m.headers() or [])["streamline.ingest.file"] for m in records} == {
        str(source).encode()
    }
