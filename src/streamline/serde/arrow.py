"""Avro record schemas as Arrow (Parquet) schemas, for the file sink.

Flat records only: each field is a primitive (`string`, `int`, `long`, `float`, `double`,
`boolean`, `bytes`), an enum (written as a string), a `long` timestamp-millis (an Arrow
`timestamp[ms, UTC]`), or a union of one of those with `null` (a nullable column).
`parquet_problems` says which fields are none of these, for `streamline validate`;
`arrow_schema` builds the schema (pyarrow is imported only then).
"""

from __future__ import annotations

from typing import Any

from streamline.serde.schema_store import Schema

_PRIMITIVES = {
    "string": "string",
    "int": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "bool_",
    "bytes": "binary",
}


def _column(field_type: Any, named: dict[str, Any]) -> tuple[str, bool] | None:
    """(Arrow type name, nullable) of one field type, or None when it has no flat column."""
    nullable = False
    if isinstance(field_type, list):
        branches = [b for b in field_type if b != "null"]
        if len(branches) != 1 or len(field_type) > 2:
            return None
        nullable, field_type = len(field_type) == 2, branches[0]
    if isinstance(field_type, str) and field_type in named:
        field_type = named[field_type]
    if isinstance(field_type, dict):
        if field_type.get("type") == "enum":
            return "string", nullable
        if field_type.get("type") == "long" and field_type.get("logicalType") == "timestamp-millis":
            return "timestamp_ms", nullable
        field_type = field_type.get("type")
    if isinstance(field_type, str) and field_type in _PRIMITIVES:
        return _PRIMITIVES[field_type], nullable
    return None


def _named(schema: Schema) -> dict[str, Any]:
    named: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            if "name" in node and node.get("type") in ("enum", "record", "fixed"):
                named[node["name"]] = node
                if node.get("namespace"):
                    named[f"{node['namespace']}.{node['name']}"] = node
            for f in node.get("fields", []):
                walk(f["type"])

    walk(schema.definition)
    return named


def parquet_problems(schema: Schema) -> list[str]:
    """The fields of `schema` that cannot be a Parquet column (one message each)."""
    named = _named(schema)
    return [
        f"field {name!r} is not a flat value (a primitive, enum or timestamp, maybe nullable); "
        "Parquet file sinks take flat records only (use format: jsonl)"
        for name, field_type in schema.fields.items()
        if _column(field_type, named) is None
    ]


def arrow_schema(schema: Schema) -> Any:
    """The `pyarrow.Schema` of a flat record schema (see `parquet_problems`)."""
    import pyarrow as pa

    named = _named(schema)
    fields = []
    for name, field_type in schema.fields.items():
        column = _column(field_type, named)
        if column is None:
            raise ValueError(parquet_problems(schema)[0])
        kind, nullable = column
        arrow_type = pa.timestamp("ms", tz="UTC") if kind == "timestamp_ms" else getattr(pa, kind)()
        fields.append(pa.field(name, arrow_type, nullable=nullable))
    return pa.schema(fields)
