"""Parquet rows as values of an Avro schema's types, read in bounded memory (pyarrow).

Arrow's nested structs become records, lists arrays, maps dicts, nulls stay null (a
nullable field's union takes the non-null branch), and timestamps, dates and times become
the integers of the schema's logical type, with naive timestamps read as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from streamline.serde import Schema

BATCH_ROWS = 10_000  # rows decoded at a time: memory stays bounded whatever the file's size
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {
    "timestamp-millis": timedelta(milliseconds=1),
    "local-timestamp-millis": timedelta(milliseconds=1),
    "timestamp-micros": timedelta(microseconds=1),
    "local-timestamp-micros": timedelta(microseconds=1),
}


def parquet_row_count(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def parquet_rows(path: Path, schema: Schema) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number from 1, record) or (row number, reason) for each row of the file."""
    unknown_checked = False
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        if not unknown_checked:
            unknown = [name for name in batch.schema.names if name not in schema.fields]
            if unknown:
                raise ValueError(f"column {unknown[0]!r} is not a field of {schema.name}")
            unknown_checked = True
        for row in batch.to_pylist():
            number += 1
            try:
                yield number, to_avro_record(row, schema.definition)
            except (ValueError, TypeError) as exc:
                yield number, str(exc)


def to_avro_record(row: dict[str, Any], record_type: dict[str, Any]) -> dict[str, Any]:
    """A row (or a struct) as a record of `record_type`; absent columns are left to defaults."""
    out = {}
    for spec in record_type["fields"]:
        name = spec["name"]
        if name in row:
            out[name] = to_avro(row[name], spec["type"])
    return out


def to_avro(value: Any, avro_type: Any) -> Any:
    """One Arrow value (as pyarrow's to_pylist gives it) as a value of `avro_type`."""
    if value is None:
        return None
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        return to_avro(value, branches[0]) if len(branches) == 1 else value
    if not isinstance(avro_type, dict):
        return value
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical in _UNITS and isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _UNITS[logical]
    if logical == "date" and isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if logical in ("time-millis", "time-micros") and isinstance(value, time):
        micros = (
            (value.hour * 60 + value.minute) * 60 + value.second
        ) * 1_000_000 + value.microsecond
        return micros // 1000 if logical == "time-millis" else micros
    if kind == "record" and isinstance(value, dict):
        return to_avro_record(value, avro_type)
    if kind == "array" and isinstance(value, list):
        return [to_avro(v, avro_type["items"]) for v in value]
    if kind == "map":
        pairs = value.items() if isinstance(value, dict) else value
        return {k: to_avro(v, avro_type["values"]) for k, v in pairs}
    return value
