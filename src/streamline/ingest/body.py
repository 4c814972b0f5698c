"""A request body (one JSON object or array, JSON lines, CSV) as encoded records, or its errors.

A body is all or nothing: `parse_body` returns the encoded records only when every record
is valid, else one `RecordError` (index, field path, reason) per problem.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastavro.validation import ValidationError, validate

from streamline.serde import AvroCodec, Schema
from streamline.serde.convert import convert_csv_row, convert_json_record

FORMATS = ("json", "jsonl", "csv")
# Content-Type (without parameters) -> body format; anything else falls back to the default
CONTENT_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "text/csv": "csv",
}
MAX_ERRORS = 100  # per response: a body of a million bad records gets the first hundred


@dataclass(frozen=True)
class RecordError:
    """Why record `index` (0-based, in body order) is invalid; `field` is empty for the whole record."""

    index: int
    field: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Encoded:
    """Every record of a valid body: (key, value) pairs in body order."""

    records: list[tuple[bytes | None, bytes]]


def body_format(content_type: str | None, default: str) -> str:
    """The format a Content-Type names, else `default` (for text/plain, octet-stream, none)."""
    if not content_type:
        return default
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower(), default)


def _json_records(text: str) -> Iterator[tuple[Any, str | None]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        yield None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return
    for item in document if isinstance(document, list) else [document]:
        yield item, None


def _jsonl_records(text: str) -> Iterator[tuple[Any, str | None]]:
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            yield json.loads(line), None
        except json.JSONDecodeError as exc:
            yield None, f"not valid JSON: {exc.msg} at column {exc.colno}"


def _field_errors(index: int, record: dict[str, Any], schema: Schema) -> list[RecordError]:
    """One error per invalid top-level field (a nested field's path is dotted)."""
    out = []
    for spec in schema.parsed["fields"]:
        name = spec["name"]
        if name not in record:
            if "default" not in spec:
                out.append(RecordError(index, name, "missing"))
            continue
        try:
            validate(record[name], spec["type"], field=name, raise_errors=True)
        except ValidationError as exc:
            err = exc.errors[0] if exc.errors else None
            path = str(getattr(err, "field", "") or name)
            expected = getattr(err, "schema", None)
            if isinstance(expected, dict):
                expected = expected.get("name") or expected.get("type")
            if isinstance(spec["type"], list) and path == name:  # a union: name every branch
                expected = " or ".join(_type_name(t) for t in spec["type"])
            datum = getattr(err, "datum", record[name])
            out.append(RecordError(index, path, f"{datum!r} is not a valid {expected}"))
    return out


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("name") or avro_type.get("logicalType") or avro_type.get("type"))
    return str(avro_type)


def parse_body(
    body: bytes, fmt: str, schema: Schema, codec: AvroCodec, key_field: str | None
) -> Encoded | list[RecordError]:
    """The body's records encoded with `codec`, or every error found (at most MAX_ERRORS)."""
    errors: list[RecordError] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [RecordError(0, "", f"body is not UTF-8: {exc.reason} at byte {exc.start}")]
    records: list[tuple[bytes | None, bytes]] = []
    for index, (item, problem) in enumerate(_records(text, fmt, schema)):
        if len(errors) >= MAX_ERRORS:
            break
        if problem is not None:
            errors.append(RecordError(index, *_field_and_reason(problem)))
            continue
        if not isinstance(item, dict):
            errors.append(RecordError(index, "", "expected a JSON object"))
            continue
        try:
            record = item if fmt == "csv" else convert_json_record(item, schema)
        except ValueError as exc:
            errors.append(RecordError(index, *_field_and_reason(str(exc))))
            continue
        found = _field_errors(index, record, schema)
        if found:
            errors.extend(found)
            continue
        if errors:
            continue  # the body is refused already: only look for more errors
        key = record.get(key_field) if key_field is not None else None
        records.append(
            (None if key is None else str(key).encode(), codec.encode(record, check=False))
        )
    if not errors and not records:
        return [RecordError(0, "", "the body holds no records")]
    return errors[:MAX_ERRORS] if errors else Encoded(records)


def _field_and_reason(message: str) -> tuple[str, str]:
    """("amount", "'x' is not a valid double") from "field amount: 'x' is not a valid double"."""
    if message.startswith("field ") and ": " in message:
        field, _, reason = message.removeprefix("field ").partition(": ")
        return field, reason
    if message.startswith("column "):
        return message.split("'")[1] if "'" in message else "", message
    return "", message


def _records(text: str, fmt: str, schema: Schema) -> Iterator[tuple[Any, str | None]]:
    if fmt == "json":
        yield from _json_records(text)
    elif fmt == "jsonl":
        yield from _jsonl_records(text)
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            try:
                yield convert_csv_row(row, schema), None
            except ValueError as exc:
                yield None, str(exc)
