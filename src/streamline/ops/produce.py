"""`streamline produce`: JSON lines or CSV in, validated records out in a topic's format
(single-object Avro, Confluent Avro registered in a Schema Registry, or JSON)."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaError, Message, Producer

from streamline.errors import StreamlineError, UsageError
from streamline.headers import CHECKSUM
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.kafka.registry import Registry
from streamline.reliability.checksum import value_checksum
from streamline.serde import EncodeError, Schema, SchemaStore
from streamline.serde.convert import convert_csv_row, convert_json_record
from streamline.serde.formats import codec_for, subject_name

# opened with the number of input lines (None: unknown); its value is called once per line
Progress = Callable[[int | None], AbstractContextManager[Callable[[], None]]]


@dataclass
class ProduceReport:
    """What one produce run did."""

    sent: int = 0
    failed: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def _rows(
    stream: IO[str], is_csv: bool, schema: Schema
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record) or (line number, reason) for each input line."""
    if is_csv:
        reader = csv.DictReader(stream)
        for row in reader:
            try:
                yield reader.line_num, convert_csv_row(row, schema)
            except ValueError as exc:
                yield reader.line_num, str(exc)
        return
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(record, dict):
            yield number, "expected a JSON object"
            continue
        try:
            yield number, convert_json_record(record, schema)
        except ValueError as exc:
            yield number, str(exc)


def produce(
    connection: Connection,
    topic: str,
    store: SchemaStore,
    schema_name: str,
    source: Path | None,
    key_field: str | None = None,
    rate: float | None = None,
    progress: Progress | None = None,
    on_invalid: Callable[[int, str], None] | None = None,
    checksum: bool = False,
    format: str = "avro",
    registry: Registry | None = None,
    subject_strategy: str = "topic",
) -> ProduceReport:
    """Validates every input line against the schema and produces the valid ones idempotently.

    `progress(total lines or None)` opens a context whose value is called once per line;
    `on_invalid(line number, reason)` hears of each line that is not sent. With
    `checksum`, each record carries `streamline.checksum`, the sha256 hex of its value.
    """
    schema = store.get(schema_name)
    if key_field is not None and key_field not in schema.fields:
        raise UsageError(f"--key-field {key_field} is not a field of {schema.name}")
    schema_id = None
    if format == "confluent-avro":
        if registry is None:
            raise UsageError(
                "--format confluent-avro needs a schema registry: give --schema-registry-url "
                "or STREAMLINE_SCHEMA_REGISTRY_URL"
            )
        subject = subject_name(subject_strategy, topic, schema.name)
        schema_id = registry.sink_schema_id(subject, schema, auto_register=True)
    codec = codec_for(format, store, schema, registry, schema_id)
    connection.check_reachable()
    require_topics(connection, [topic])
    report = ProduceReport()
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            report.sent += 1
        else:
            report.failed += 1
            errors.append(err)

    producer = Producer(
        connection.config(
            **{"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"},
            log_level=0,
        )
    )
    is_csv = source is not None and source.suffix.lower() == ".csv"
    try:
        stream: IO[str] = source.open(newline="" if is_csv else None) if source else sys.stdin
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    started = time.monotonic()
    tracked = (
        progress(_count_lines(source) if source else None) if progress else nullcontext(_ignore)
    )
    with stream, tracked as advance:
        produced = 0
        for number, row in _rows(stream, is_csv, schema):
            advance()
            if isinstance(row, str):
                report.invalid.append((number, row))
                if on_invalid:
                    on_invalid(number, row)
                continue
            try:
                value = codec.encode(row)
            except EncodeError as exc:
                report.invalid.append((number, str(exc)))
                if on_invalid:
                    on_invalid(number, str(exc))
                continue
            key = (
                None
                if key_field is None or row.get(key_field) is None
                else str(row[key_field]).encode()
            )
            headers: list[tuple[str, str | bytes | None]] | None = (
                [(CHECKSUM, value_checksum(value))] if checksum else None
            )
            _produce_one(producer, topic, key, value, delivered, headers)
            produced += 1
            if rate:
                ahead = produced / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        remaining = producer.flush(30)
    if remaining:
        raise StreamlineError(f"{remaining} records were not delivered to {topic} within 30s")
    if report.failed:
        denied = connection.access_error(errors[0], topic=topic, operation="WRITE")
        raise denied or StreamlineError(
            f"{report.failed} of {report.sent + report.failed} records could not be delivered "
            f"to {topic}: {errors[0].str()}"
        )
    return report


def _produce_one(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    cb: Any,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=cb, headers=headers)
            producer.poll(0)
            return
        except BufferError:  # local queue full: wait for deliveries, then retry
            producer.poll(0.1)


def _count_lines(source: Path) -> int | None:
    try:
        with source.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def _ignore() -> None:
    pass
