"""Why a new record schema breaks a Schema Registry compatibility rule, in one line naming the field.

The registry decides whether a schema is compatible; this says why not, for the message:
the first field that was added without a default (BACKWARD: a new reader cannot read old
records), removed while the old schema gives it no default (FORWARD), or whose type
changed in a way Avro resolution cannot promote.
"""

from __future__ import annotations

from typing import Any

# writer type -> reader types Avro resolution promotes it to
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _type_name(node: Any) -> str:
    if isinstance(node, list):
        return "[" + ", ".join(_type_name(b) for b in node) + "]"
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            return str(node.get("name", kind))
        if kind == "array":
            return f"array<{_type_name(node.get('items'))}>"
        if kind == "map":
            return f"map<{_type_name(node.get('values'))}>"
        return _type_name(kind)
    return str(node)


def _readable(writer: Any, reader: Any) -> bool:
    """Whether data written as `writer` can be read as `reader` (a shallow check)."""
    w, r = _type_name(writer), _type_name(reader)
    if w == r:
        return True
    if isinstance(reader, list):
        branches = writer if isinstance(writer, list) else [writer]
        return all(any(_readable(b, rb) for rb in reader) for b in branches)
    if isinstance(writer, list):
        return all(_readable(b, reader) for b in writer)
    return r in PROMOTIONS.get(w, set())


def _fields(schema: Any) -> dict[str, dict[str, Any]]:
    if isinstance(schema, dict):
        return {f["name"]: f for f in schema.get("fields", [])}
    return {}


def _backward(old: Any, new: Any) -> str | None:
    old_fields, new_fields = _fields(old), _fields(new)
    for name, f in new_fields.items():
        if name not in old_fields:
            if "default" not in f:
                return f"field {name} was added without a default"
        elif not _readable(old_fields[name]["type"], f["type"]):
            return (
                f"field {name} changed type from {_type_name(old_fields[name]['type'])} "
                f"to {_type_name(f['type'])}"
            )
    return None


def _forward(old: Any, new: Any) -> str | None:
    old_fields, new_fields = _fields(old), _fields(new)
    for name, f in old_fields.items():
        if name not in new_fields:
            if "default" not in f:
                return f"field {name} was removed and the previous schema gives it no default"
        elif not _readable(new_fields[name]["type"], f["type"]):
            return (
                f"field {name} changed type from {_type_name(f['type'])} "
                f"to {_type_name(new_fields[name]['type'])}"
            )
    return None


def first_incompatibility(old: Any, new: Any, rule: str) -> str | None:
    """The first reason `new` breaks `rule` (BACKWARD, FORWARD, FULL, ..._TRANSITIVE, NONE)."""
    rule = rule.upper().removesuffix("_TRANSITIVE")
    if rule == "NONE":
        return None
    if rule in ("BACKWARD", "FULL"):
        reason = _backward(old, new)
        if reason:
            return reason
    if rule in ("FORWARD", "FULL"):
        return _forward(old, new)
    return None
