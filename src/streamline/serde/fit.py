"""Whether a dict is a record of a schema, and if not, the path of the first field that is not.

A typed map (`- map: {fn: ..., output: Schema}`) checks every result with `RecordFit`:
fastavro's validator says yes or no quickly; only for a misfit is the record walked
again to name the field (`items[2].price`) and say what it holds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, cast

from fastavro.validation import ValidationError, validate

from streamline.serde.schema_store import Schema

MISSING = object()


class RecordFit:
    """Checks dicts against one record schema and shapes those that fit to it exactly."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.parsed = schema.parsed
        self.named: dict[str, Any] = {}
        _collect(self.parsed, self.named)
        fields = self.parsed.get("fields", []) if isinstance(self.parsed, dict) else []
        self.names = frozenset(f["name"] for f in fields)
        self.defaults = {f["name"]: f["default"] for f in fields if "default" in f}
        self._flat = _flat_check(fields)

    def misfit(self, value: Any) -> tuple[str, str] | None:
        """(field path, what is wrong) for a value that is not a record of the schema, else None."""
        flat = self._flat
        if flat is not None and type(value) is dict and flat(value):
            return None
        try:
            validate(value, self.parsed, raise_errors=True)
            return None
        except (ValidationError, TypeError, ValueError, AttributeError, KeyError):
            pass
        found = _walk(value, self.parsed, self.named, "")
        return found or ("", f"does not fit {self.schema.name}")

    def shape(self, value: dict[str, Any]) -> dict[str, Any]:
        """A fitting record with defaulted fields filled in and keys outside the schema left out."""
        if value.keys() == self.names:
            return value
        shaped = {k: v for k, v in value.items() if k in self.names}
        for name, default in self.defaults.items():
            if name not in shaped:
                shaped[name] = copy.deepcopy(default)
        return shaped


_LONG = "-9223372036854775808 <= x < 9223372036854775808"
_CONDITIONS: dict[str, str] = {
    "string": "type(x) is str",
    "boolean": "type(x) is bool",
    "long": f"type(x) is int and {_LONG}",
    "int": "type(x) is int and -2147483648 <= x < 2147483648",
    "double": f"type(x) is float or (type(x) is int and {_LONG})",
    "float": f"type(x) is float or (type(x) is int and {_LONG})",
    "bytes": "type(x) is bytes",
}


def _flat_check(fields: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool] | None:
    """A generated check of a record whose fields are all primitives (maybe nullable), else None.

    A value it passes is a record of the schema; one it fails is checked again by fastavro,
    which names the field (the check accepts a subset of what fastavro accepts)."""
    lines = ["def check(v):", "    g = v.get"]
    for f in fields:
        kind = f["type"]
        nullable = False
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
            nullable, kind = True, next(k for k in kind if k != "null")
        if isinstance(kind, dict) and kind.get("type") == "long":
            kind = "long"  # timestamp-millis and friends: epoch numbers
        condition = _CONDITIONS.get(kind) if isinstance(kind, str) else None
        if condition is None:
            return None
        if nullable:
            condition = f"x is None or ({condition})"
        lines += [
            f"    x = g({f['name']!r}, M)",
            f"    if x is M:{' pass' if 'default' in f else ' return False'}",
            f"    elif not ({condition}): return False",
        ]
    lines.append("    return True")
    namespace: dict[str, Any] = {"M": MISSING}
    exec("\n".join(lines), namespace)  # generated from the field types only
    return cast(Callable[[dict[str, Any]], bool], namespace["check"])


def _collect(node: Any, out: dict[str, Any]) -> None:
    """Named types of a parsed schema, by full name."""
    if isinstance(node, list):
        for branch in node:
            _collect(branch, out)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
            out[node["name"]] = node
        for field in node.get("fields", []):
            _collect(field["type"], out)
        for key in ("items", "values"):
            if key in node:
                _collect(node[key], out)


def _fits(value: Any, schema: Any, named: dict[str, Any]) -> bool:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    try:
        return bool(validate(value, schema, raise_errors=False))
    except Exception:
        return False


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " | ".join(_type_name(branch) for branch in schema)
    return str(schema)


def _walk(value: Any, schema: Any, named: dict[str, Any], path: str) -> tuple[str, str] | None:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind in ("record", "error"):
        if not isinstance(value, Mapping):
            return path, f"{value!r:.80} is not a {schema.get('name')} record"
        for field in schema["fields"]:
            name = field["name"]
            at = f"{path}.{name}" if path else name
            item = value.get(name, MISSING)
            if item is MISSING:
                if "default" in field:
                    continue
                return at, f"missing ({_type_name(field['type'])}, no default)"
            found = _walk(item, field["type"], named, at)
            if found is not None:
                return found
        return None
    if kind == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk(item, schema["items"], named, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if kind == "map" and isinstance(value, Mapping):
        for key, item in value.items():
            found = _walk(item, schema["values"], named, f"{path}[{key!r}]")
            if found is not None:
                return found
        return None
    if _fits(value, schema, named):
        return None
    return path, f"{value!r:.80} is not a valid {_type_name(schema)}"
