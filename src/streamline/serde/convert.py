"""Turning JSON or CSV input into values of an Avro schema's types, and records back into JSON."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from streamline.serde.schema_store import Schema, logical_type_of

TIMESTAMP_TYPES = frozenset({"timestamp-millis", "local-timestamp-millis"})


def parse_timestamp_ms(value: str) -> int:
    """Epoch milliseconds of an ISO-8601 string; naive times are UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _convert_text(text: str, field_type: Any) -> Any:
    """A CSV cell as a value of `field_type`; raises ValueError when it is not one."""
    avro_type, logical = logical_type_of(field_type)
    nullable = isinstance(field_type, list) and "null" in field_type
    if text == "" and nullable:
        return None
    if logical in TIMESTAMP_TYPES:
        return int(text) if text.lstrip("-").isdigit() else parse_timestamp_ms(text)
    if avro_type in ("int", "long"):
        return int(text)
    if avro_type in ("float", "double"):
        return float(text)
    if avro_type == "boolean":
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if avro_type == "null":
        if text == "":
            return None
        raise ValueError(f"{text!r} is not null")
    return text


def convert_json_record(record: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """A JSON record with timestamp fields given as ISO strings turned into epoch millis."""
    out = dict(record)
    for name, field_type in schema.fields.items():
        value = out.get(name)
        if isinstance(value, str):
            _, logical = logical_type_of(field_type)
            if logical in TIMESTAMP_TYPES:
                try:
                    out[name] = parse_timestamp_ms(value)
                except ValueError:
                    raise ValueError(
                        f"field {name}: {value!r} is not an ISO-8601 timestamp"
                    ) from None
    return out


def convert_csv_row(row: dict[str, str], schema: Schema) -> dict[str, Any]:
    """A CSV row (all strings) converted to the schema's field types."""
    fields = schema.fields
    unknown = [name for name in row if name not in fields]
    if unknown:
        raise ValueError(f"column {unknown[0]!r} is not a field of {schema.name}")
    out: dict[str, Any] = {}
    for name, text in row.items():
        try:
            out[name] = _convert_text(text, fields[name])
        except ValueError:
            raise ValueError(
                f"field {name}: {text!r} is not a valid {logical_type_of(fields[name])[0]}"
            ) from None
    return out


def to_json_value(value: Any) -> Any:
    """A decoded Avro value made JSON-printable (bytes become base64)."""
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return value
