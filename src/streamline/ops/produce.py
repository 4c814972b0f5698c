"""`streamline produce`: JSON lines, CSV or Parquet in, validated single-object Avro records out.

A file (not stdin) is produced in one transaction together with its record on
`streamline.ingest` (sha256, count, offsets: `streamline.ops.ingest_log`), and each of its
records carries the `streamline.ingest.*` headers naming the file, its hash and the line.
Producing the same content to the same topic again is refused unless forced.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaError, Message, Producer

from streamline.errors import StreamlineError, UsageError
from streamline.headers import CHECKSUM, INGEST_FILE, INGEST_LINE, INGEST_SHA256
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.ops.ingest_log import (
    INGEST_TOPIC,
    IngestRun,
    earlier_run,
    ensure_ingest_topic,
    file_sha256,
)
from streamline.reliability.checksum import value_checksum
from streamline.serde import AvroCodec, EncodeError, Schema, SchemaStore
from streamline.serde.codec import MAGIC
from streamline.serde.convert import convert_csv_row, convert_json_record
from streamline.serde.fastcodec import compile_writer

# opened with the number of input lines (None: unknown); its value is called once per line
Progress = Callable[[int | None], AbstractContextManager[Callable[[], None]]]


@dataclass
class ProduceReport:
    """What one produce run did."""

    sent: int = 0
    failed: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    run: IngestRun | None = None  # what was recorded on streamline.ingest, for a file


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
    force: bool = False,
) -> ProduceReport:
    """Validates every input line against the schema and produces the valid ones idempotently.

    `progress(total lines or None)` opens a context whose value is called once per line;
    `on_invalid(line number, reason)` hears of each line that is not sent. With
    `checksum`, each record carries `streamline.checksum`, the sha256 hex of its value.
    A file already produced to `topic` (same sha256) is refused unless `force`.
    """
    schema = store.get(schema_name)
    if key_field is not None and key_field not in schema.fields:
        raise UsageError(f"--key-field {key_field} is not a field of {schema.name}")
    codec = AvroCodec(store, schema)
    connection.check_reachable()
    require_topics(connection, [topic])
    report = ProduceReport()
    errors: list[KafkaError] = []
    offsets: dict[int, list[int]] = {}

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            report.sent += 1
            span = offsets.get(msg.partition() or 0)
            offset = msg.offset() or 0
            if span is None:
                offsets[msg.partition() or 0] = [offset, offset]
            else:
                span[0], span[1] = min(span[0], offset), max(span[1], offset)
        else:
            report.failed += 1
            errors.append(err)

    suffix = source.suffix.lower() if source is not None else ""
    is_csv, is_parquet = suffix == ".csv", suffix == ".parquet"
    try:
        stream: IO[str] | None = (
            None
            if is_parquet
            else source.open(newline="" if is_csv else None)
            if source
            else sys.stdin
        )
        sha256 = file_sha256(source) if source is not None else None
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if sha256 is not None and not force:
        earlier = earlier_run(connection, topic, sha256)
        if earlier is not None:
            if stream is not None:
                stream.close()
            raise UsageError(f"{earlier.describe()}; pass --force to produce it again")
    settings: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4"}
    if sha256 is not None:
        ensure_ingest_topic(connection)
        # one id per topic and content: a re-run after a crash fences the crashed one
        settings["transactional.id"] = f"streamline-produce-{topic}-{sha256[:16]}"
        settings["transaction.timeout.ms"] = 900_000
    else:
        settings["enable.idempotence"] = True
    producer = Producer(connection.config(**settings, log_level=0))
    if sha256 is not None:
        producer.init_transactions(30)
        producer.begin_transaction()
    file_headers: list[tuple[str, str | bytes | None]] = (
        [(INGEST_FILE, str(source)), (INGEST_SHA256, sha256)] if sha256 is not None else []
    )
    # Parquet rows of nested, nullable types make fastavro's validation slow: the generated
    # writer (which refuses whatever validation would) goes first, validation explains
    write = (
        compile_writer(schema.parsed, MAGIC + schema.fingerprint, schema.name)
        if is_parquet
        else None
    )
    started = time.monotonic()
    total = None if source is None else _count_rows(source, is_parquet)
    tracked = progress(total) if progress else nullcontext(_ignore)
    with stream or nullcontext(), tracked as advance:
        produced = 0
        rows = (
            _rows(stream, is_csv, schema) if stream is not None else _parquet_rows(source, schema)  # type: ignore[arg-type]
        )
        for number, row in rows:
            advance()
            if isinstance(row, str):
                report.invalid.append((number, row))
                if on_invalid:
                    on_invalid(number, row)
                continue
            try:
                value = _fast_encode(write, codec, row)
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
            headers: list[tuple[str, str | bytes | None]] | None = None
            if file_headers:
                headers = [*file_headers, (INGEST_LINE, str(number))]
            if checksum:
                headers = [*(headers or []), (CHECKSUM, value_checksum(value))]
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
        if sha256 is not None:
            producer.abort_transaction(30)
        denied = connection.access_error(errors[0], topic=topic, operation="WRITE")
        raise denied or StreamlineError(
            f"{report.failed} of {report.sent + report.failed} records could not be delivered "
            f"to {topic}: {errors[0].str()}"
        )
    if sha256 is not None and source is not None:
        report.run = IngestRun(
            file=str(source),
            sha256=sha256,
            topic=topic,
            records=report.sent,
            invalid=len(report.invalid),
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            offsets={str(p): span for p, span in sorted(offsets.items())},
        )
        producer.produce(INGEST_TOPIC, key=report.run.key(), value=report.run.encode())
        producer.commit_transaction(60)
    return report


def _fast_encode(write: Any, codec: AvroCodec, row: dict[str, Any]) -> bytes:
    if write is not None:
        try:
            return bytes(write(row))
        except Exception:
            pass  # not necessarily invalid: the checked encoder decides, naming the field
    return codec.encode(row)


def _parquet_rows(source: Path, schema: Schema) -> Iterator[tuple[int, dict[str, Any] | str]]:
    from streamline.ops.parquet import parquet_rows

    try:
        yield from parquet_rows(source, schema)
    except OSError as exc:
        raise UsageError(f"cannot read {source} as Parquet: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith("column "):
            raise UsageError(f"{source}: {exc}") from None
        raise


def _count_rows(source: Path, is_parquet: bool) -> int | None:
    if not is_parquet:
        return _count_lines(source)
    from streamline.ops.parquet import parquet_row_count

    try:
        return parquet_row_count(source)
    except OSError:
        return None


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
