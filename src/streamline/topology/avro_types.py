"""What the type checker needs to know about Avro field types: categories, fit, names, samples.

Types are field types as they appear in a `Schema.definition` (named types are
inlined at first use and referred to by full name afterwards, hence `named`).
Logical types matter for categories (a timestamp is not a number to sum) but
not for fit: Avro schema resolution ignores them, and records carry plain ints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamline.serde.schema_store import PRIMITIVES, Schema, logical_type_of

NUMBERS = frozenset({"int", "long", "float", "double"})
TIMESTAMP_LOGICAL_TYPES = frozenset(
    {"timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros"}
)
ORDERED_LOGICAL_TYPES = TIMESTAMP_LOGICAL_TYPES | {"date", "time-millis", "time-micros"}
KEY_TYPES = frozenset({"string", "int", "long", "boolean", "enum", "float", "double"})

# Avro schema resolution: a writer type may be read as these reader types.
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}


def named_types(schema: Schema) -> dict[str, dict[str, Any]]:
    """Every named type defined inside a schema's definition, by full name."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
                found.setdefault(node["name"], node)
            for key in ("type", "items", "values"):
                if not isinstance(node.get(key), str):
                    walk(node.get(key))
            for field in node.get("fields", []):
                walk(field.get("type"))

    walk(schema.definition)
    return found


def resolve(field_type: Any, named: Mapping[str, Any]) -> Any:
    """The type with a named reference replaced by its definition; `{"type": "long"}` as `long`."""
    if isinstance(field_type, str):
        return named.get(field_type, field_type)
    if isinstance(field_type, dict):
        kind = field_type.get("type")
        if isinstance(kind, str) and kind in PRIMITIVES and "logicalType" not in field_type:
            return kind
        if not isinstance(kind, str):
            return resolve(kind, named)
    return field_type


def is_nullable(field_type: Any) -> bool:
    return isinstance(field_type, list) and "null" in field_type


def _base(field_type: Any, named: Mapping[str, Any]) -> tuple[str, str | None]:
    """(avro type, logical type) of the non-null branch; ("union", None) for a real union."""
    return logical_type_of(resolve_branches(field_type, named))


def resolve_branches(field_type: Any, named: Mapping[str, Any]) -> Any:
    if isinstance(field_type, list):
        return [resolve(branch, named) for branch in field_type]
    return resolve(field_type, named)


def is_number(field_type: Any, named: Mapping[str, Any]) -> bool:
    kind, logical = _base(field_type, named)
    return kind in NUMBERS and logical is None


def is_ordered(field_type: Any, named: Mapping[str, Any]) -> bool:
    """Numbers, strings and timestamps/dates: what min and max accept."""
    kind, logical = _base(field_type, named)
    if logical in ORDERED_LOGICAL_TYPES:
        return True
    return (kind in NUMBERS and logical is None) or kind == "string"


def is_integer(field_type: Any, named: Mapping[str, Any]) -> bool:
    kind, logical = _base(field_type, named)
    return kind in ("int", "long") and logical is None


def is_millis_long(field_type: Any, named: Mapping[str, Any], *, nullable: bool = False) -> bool:
    """A long holding epoch milliseconds: plain, or with logical type timestamp-millis."""
    if is_nullable(field_type) and not nullable:
        return False
    kind, logical = _base(field_type, named)
    return kind == "long" and logical in (None, "timestamp-millis", "local-timestamp-millis")


def is_string(field_type: Any, named: Mapping[str, Any]) -> bool:
    return not is_nullable(field_type) and _base(field_type, named) == ("string", None)


def can_be_key(field_type: Any, named: Mapping[str, Any]) -> bool:
    kind, _ = _base(field_type, named)
    return kind in KEY_TYPES


def describe(field_type: Any, named: Mapping[str, Any] | None = None) -> str:
    """A field type in words: `string`, `long (timestamp-millis)`, `nullable double`, ..."""
    if isinstance(field_type, list):
        branches = [b for b in field_type if b != "null"]
        inner = " | ".join(describe(b, named) for b in branches) or "null"
        if "null" in field_type and len(branches) == 1:
            return f"nullable {inner}"
        return f"union of {inner}" + (" | null" if "null" in field_type else "")
    resolved = resolve(field_type, named or {})
    if isinstance(resolved, str):
        return resolved
    kind = resolved.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        return f"{kind} {resolved.get('name')}"
    if kind == "array":
        return f"array of {describe(resolved.get('items'), named)}"
    if kind == "map":
        return f"map of {describe(resolved.get('values'), named)}"
    logical = resolved.get("logicalType")
    return f"{kind} ({logical})" if logical else str(kind)


def fits(source: Any, target: Any, named: Mapping[str, Any]) -> bool:
    """Whether a `source` value can be written to a field of type `target` (Avro resolution)."""
    source, target = resolve_branches(source, named), resolve_branches(target, named)
    if isinstance(source, list):
        return all(fits(branch, target, named) for branch in source)
    if isinstance(target, list):
        return any(fits(source, branch, named) for branch in target)
    source_kind, target_kind = _kind(source), _kind(target)
    if source_kind in PRIMITIVES or target_kind in PRIMITIVES:
        if source_kind == "enum" and target_kind == "string":
            return True  # enum symbols travel as strings inside the pipeline
        return target_kind in PROMOTIONS.get(source_kind, frozenset({source_kind}))
    if source_kind != target_kind:
        return False
    if source_kind in ("record", "error", "enum", "fixed"):
        return bool(source.get("name") == target.get("name"))
    if source_kind == "array":
        return fits(source.get("items"), target.get("items"), named)
    if source_kind == "map":
        return fits(source.get("values"), target.get("values"), named)
    return False


def _kind(resolved: Any) -> str:
    if isinstance(resolved, str):
        return resolved
    return str(resolved.get("type"))


def sample_value(field_type: Any, named: Mapping[str, Any]) -> Any:
    """A value of this type, as records carry it (timestamps as ints, enums as symbols).

    Used to probe expressions for type errors; nullable fields get a non-null value
    so that every operation on them is exercised.
    """
    resolved = resolve_branches(field_type, named)
    if isinstance(resolved, list):
        branches = [b for b in resolved if b != "null"]
        return sample_value(branches[0], named) if branches else None
    kind = _kind(resolved)
    simple: dict[str, Any] = {
        "null": None,
        "boolean": False,
        "int": 0,
        "long": 0,
        "float": 0.0,
        "double": 0.0,
        "bytes": b"",
        "string": "",
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return resolved["symbols"][0]
    if kind == "fixed":
        return bytes(resolved.get("size", 0))
    if kind == "array":
        return []
    if kind == "map":
        return {}
    if kind in ("record", "error"):
        return {f["name"]: sample_value(f["type"], named) for f in resolved.get("fields", [])}
    return None


def sample_record(schema: Schema) -> dict[str, Any]:
    named = named_types(schema)
    return {name: sample_value(t, named) for name, t in schema.fields.items()}


def python_value_type(value: Any) -> str | None:
    """The Avro type a CEL result would be written as, or None when it has no single one."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    return None
