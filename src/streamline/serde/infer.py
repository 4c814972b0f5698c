"""A draft Avro schema from sample records (`streamline schema infer`): for a user to edit.

Records come from JSON lines, CSV rows (strings, `text=True`) or Parquet rows (as pyarrow
gives them: datetimes, dates, bytes and decimals keep their kind).

Each value widens what a field is known to hold: booleans, whole numbers (`long`), numbers
(`double`), strings, nested objects (records, named after their field) and lists (arrays).
Strings that are all ISO-8601 date-times become `timestamp-millis`, all dates `date`;
whole numbers in the epoch-milliseconds range in a field whose name says time (`..._at`,
`time`, `ts`, `timestamp`, `date`) become `timestamp-millis` too. A field missing from some
records or null in some is nullable (`["null", T]`, default null). Values of different
kinds make a union, for the user to settle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_TIME_NAME = re.compile(r"(_at|_ts|_time|_timestamp|_date)$|^(ts|time|timestamp|date)$", re.I)
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
# epoch milliseconds between 2001-09-09 and 2286-11-20
EPOCH_MS = (10**12, 10**13)
ORDER = (
    "null", "boolean", "long", "double", "timestamp", "date", "string", "bytes", "record", "array",
)  # fmt: skip


def _is_datetime(text: str) -> bool:
    if not _DATETIME.match(text):
        return False
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        return True
    except ValueError:
        return False


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
        return True
    except ValueError:
        return False


@dataclass
class Shape:
    """What the values seen at one place were."""

    kinds: set[str] = field(default_factory=set)
    fields: dict[str, Shape] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    records: int = 0
    items: Shape | None = None
    whole_in_epoch_range: bool = True

    def add(self, value: Any) -> None:
        if value is None:
            self.kinds.add("null")
        elif isinstance(value, bool):
            self.kinds.add("boolean")
        elif isinstance(value, int):
            self.kinds.add("long")
            self.whole_in_epoch_range &= EPOCH_MS[0] <= value < EPOCH_MS[1]
        elif isinstance(value, float):
            self.kinds.add("double")
        elif isinstance(value, datetime):
            self.kinds.add("timestamp")
        elif isinstance(value, date):
            self.kinds.add("date")
        elif isinstance(value, bytes):
            self.kinds.add("bytes")
        elif isinstance(value, Decimal):
            self.kinds.add("double")
        elif isinstance(value, str):
            self.kinds.add(
                "timestamp" if _is_datetime(value) else "date" if _is_date(value) else "string"
            )
        elif isinstance(value, dict):
            self.kinds.add("record")
            self.add_record(value)
        elif isinstance(value, list):
            self.kinds.add("array")
            self.items = self.items or Shape()
            for item in value:
                self.items.add(item)
        else:
            self.kinds.add("string")

    def add_record(self, record: dict[str, Any]) -> None:
        self.records += 1
        for name, value in record.items():
            self.fields.setdefault(name, Shape()).add(value)
            self.present[name] = self.present.get(name, 0) + 1

    def add_text(self, text: str) -> None:
        """A CSV cell: empty is null; otherwise the narrowest kind its text reads as."""
        if text == "":
            self.kinds.add("null")
        elif text.lower() in ("true", "false"):
            self.kinds.add("boolean")
        elif _INT.match(text):
            self.add(int(text))
        elif _FLOAT.match(text):
            self.kinds.add("double")
        else:
            self.add(text)


def _type_of(shape: Shape, name: str, namespace: str | None, names: set[str]) -> Any:
    kinds = set(shape.kinds)
    if {"long", "double"} <= kinds:
        kinds.discard("long")
    if "string" in kinds:  # a mix of text and timestamps is text
        kinds -= {"timestamp", "date"}
    if {"timestamp", "date"} <= kinds:
        kinds.discard("date")
    if (
        kinds - {"null"} == {"long"}
        and shape.whole_in_epoch_range
        and _TIME_NAME.search(name) is not None
    ):
        kinds.discard("long")
        kinds.add("timestamp")
    branches: list[Any] = []
    for kind in ORDER:
        if kind not in kinds or kind == "null":
            continue
        if kind == "timestamp":
            branches.append({"type": "long", "logicalType": "timestamp-millis"})
        elif kind == "date":
            branches.append({"type": "int", "logicalType": "date"})
        elif kind == "record":
            branches.append(_record(shape, _record_name(name, names), namespace, names))
        elif kind == "array":
            items = shape.items or Shape(kinds={"string"})
            if not items.kinds:
                items.kinds.add("string")
            branches.append({"type": "array", "items": _type_of(items, name, namespace, names)})
        else:
            branches.append(kind)
    if not branches:
        branches = ["string"]  # only nulls were seen: the user says what it is
    if "null" in kinds:
        return ["null", *branches]
    return branches[0] if len(branches) == 1 else branches


def _record_name(name: str, names: set[str]) -> str:
    base = "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)
    base = base or "Record"
    candidate, n = base, 2
    while candidate in names:
        candidate, n = f"{base}{n}", n + 1
    names.add(candidate)
    return candidate


def _field_name(name: str) -> str:
    cleaned = _NOT_NAME.sub("_", name) or "_"
    return f"_{cleaned}" if cleaned[0].isdigit() else cleaned


def _record(shape: Shape, name: str, namespace: str | None, names: set[str]) -> dict[str, Any]:
    fields = []
    for raw, child in shape.fields.items():
        if shape.present.get(raw, 0) < shape.records:
            child.kinds.add("null")  # missing from some records
        avro_type = _type_of(child, raw, namespace, names)
        entry: dict[str, Any] = {"name": _field_name(raw), "type": avro_type}
        if isinstance(avro_type, list) and avro_type[0] == "null":
            entry["default"] = None
        if entry["name"] != raw:
            entry["doc"] = f"from {raw!r}"
        fields.append(entry)
    return {"type": "record", "name": name, "fields": fields}


def infer_schema(
    records: Iterable[dict[str, Any]],
    name: str,
    namespace: str | None = None,
    *,
    text: bool = False,
) -> dict[str, Any]:
    """The draft record schema of `records` (CSV rows of strings when `text`)."""
    shape = Shape(kinds={"record"})
    for record in records:
        if text:
            shape.records += 1
            for key, cell in record.items():
                shape.fields.setdefault(key, Shape()).add_text(cell if cell is not None else "")
                shape.present[key] = shape.present.get(key, 0) + 1
        else:
            shape.add_record(record)
    if shape.records == 0:
        raise ValueError("no records to infer a schema from")
    schema = _record(shape, name, namespace, {name})
    if namespace:
        schema = {
            "type": "record",
            "name": name,
            "namespace": namespace,
            "fields": schema["fields"],
        }
    return schema
