"""`streamline produce`: JSON lines or CSV in, validated single-object Avro records out."""

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
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, EncodeError, Schema, SchemaStore
from streamline.serde.convert import convert_csv_row, convert_json_record

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
) -> ProduceReport:
    """Validates every input line against the schema and produces the valid ones idempotently.

    `progress(total lines or None)` opens a context whose value is called once per line;
    `on_invalid(line number, reason)` hears of each line that is not sent.
    """
    schema = store.get(schema_name)
    if key_field is not None and key_field not in schema.fields:
        raise UsageError(f"--key-field {key_field} is not a field of {schema.name}")
    codec = AvroCodec(store, schema)
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
            _produce_one(producer, topic, key, value, delivered)
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


def _produce_one(producer: Producer, topic: str, key: bytes | None, value: bytes, cb: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=cb)
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
