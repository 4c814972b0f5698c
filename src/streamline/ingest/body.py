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
from streamline.serde.codec import MAGIC
from streamline.serde.convert import TIMESTAMP_TYPES, convert_csv_row, parse_timestamp_ms
from streamline.serde.fastcodec import compile_writer
from streamline.serde.schema_store import logical_type_of

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


class BodyParser:
    """Parses bodies for one schema; what it can work out once (timestamp fields, the
    generated encoder) it works out at construction, so each record costs little."""

    def __init__(self, schema: Schema, codec: AvroCodec, key_field: str | None) -> None:
        self.schema = schema
        self.codec = codec
        self.key_field = key_field
        self._timestamps = [
            name for name, t in schema.fields.items() if logical_type_of(t)[1] in TIMESTAMP_TYPES
        ]
        # the generated writer refuses anything fastavro's validation would refuse (and a
        # few it accepts, e.g. 3 for a double): those get the full check before an error
        self._write = compile_writer(schema.parsed, MAGIC + schema.fingerprint, schema.name)

    def parse(self, body: bytes, fmt: str) -> Encoded | list[RecordError]:
        """The body's records encoded, or every error found (at most MAX_ERRORS)."""
        errors: list[RecordError] = []
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [RecordError(0, "", f"body is not UTF-8: {exc.reason} at byte {exc.start}")]
        records: list[tuple[bytes | None, bytes]] = []
        key_field = self.key_field
        for index, (item, problem) in enumerate(_records(text, fmt, self.schema)):
            if len(errors) >= MAX_ERRORS:
                break
            if problem is not None:
                errors.append(RecordError(index, *_field_and_reason(problem)))
                continue
            if not isinstance(item, dict):
                errors.append(RecordError(index, "", "expected a JSON object"))
                continue
            try:
                record = item if fmt == "csv" else self._timestamps_converted(item)
                value = self._encode(index, record)
            except ValueError as exc:
                errors.append(RecordError(index, *_field_and_reason(str(exc))))
                continue
            except _Invalid as invalid:
                errors.extend(invalid.errors)
                continue
            if errors:
                continue  # the body is refused already: only look for more errors
            key = record.get(key_field) if key_field is not None else None
            records.append((None if key is None else str(key).encode(), value))
        if not errors and not records:
            return [RecordError(0, "", "the body holds no records")]
        return errors[:MAX_ERRORS] if errors else Encoded(records)

    def _timestamps_converted(self, record: dict[str, Any]) -> dict[str, Any]:
        out = record
        for name in self._timestamps:
            value = record.get(name)
            if isinstance(value, str):
                if out is record:
                    out = dict(record)
                try:
                    out[name] = parse_timestamp_ms(value)
                except ValueError:
                    raise ValueError(
                        f"field {name}: {value!r} is not an ISO-8601 timestamp"
                    ) from None
        return out

    def _encode(self, index: int, record: dict[str, Any]) -> bytes:
        if self._write is not None:
            try:
                return bytes(self._write(record))
            except Exception:
                pass  # not necessarily invalid: the full check below decides
        found = _field_errors(index, record, self.schema)
        if found:
            raise _Invalid(found)
        return self.codec.encode(record, check=False)


class _Invalid(Exception):
    def __init__(self, errors: list[RecordError]) -> None:
        self.errors = errors


def parse_body(
    body: bytes, fmt: str, schema: Schema, codec: AvroCodec, key_field: str | None
) -> Encoded | list[RecordError]:
    """`BodyParser(schema, codec, key_field).parse(body, fmt)`, for one body."""
    return BodyParser(schema, codec, key_field).parse(body, fmt)


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
