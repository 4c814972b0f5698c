"""The `json` format: one JSON object per value, checked and converted against an Avro schema.

Reading builds, once per schema, a converter per type that walks a parsed JSON value and
returns it in the form the Avro path would have produced (epoch-millisecond timestamps,
decimals as their unscaled two's-complement bytes). The first mismatch raises a
`DecodeError` naming its JSON path (`$.items[2].price: expected number`); the path is only
built on failure. Timestamps are accepted as ISO-8601 strings or epoch milliseconds,
decimals as strings or numbers. Fields the schema does not name are ignored; a missing
field takes its default, else null when nullable, else is an error.

Writing turns a record into compact JSON: timestamps stay epoch milliseconds, decimals
become strings, other bytes base64.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fastavro.validation import ValidationError, validate

from streamline.serde.codec import DecodeError, EncodeError, describe_validation_error
from streamline.serde.convert import parse_timestamp_ms
from streamline.serde.schema_store import PRIMITIVES, Schema

Convert = Callable[[Any], Any]
TIME_LOGICAL = frozenset(
    {
        "timestamp-millis",
        "timestamp-micros",
        "local-timestamp-millis",
        "local-timestamp-micros",
    }
)
_decoder = json.JSONDecoder()


class Mismatch(Exception):
    """A value that does not fit; `path` is filled in, innermost part first, as it unwinds."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected
        self.path: list[str] = []

    def where(self) -> str:
        return "$" + "".join(reversed(self.path))


def _field_path(name: str) -> str:
    return f".{name}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fail(expected: str, value: Any) -> Mismatch:
    return Mismatch(f"expected {expected}, got {_kind(value)}")


def _timestamp(scale: int) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is int:
            return value
        if isinstance(value, str):
            try:
                return parse_timestamp_ms(value) * scale
            except ValueError:
                raise Mismatch("expected an ISO-8601 timestamp or epoch milliseconds") from None
        raise _fail("an ISO-8601 timestamp or epoch milliseconds", value)

    return convert


def _date(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, str):
        from datetime import date

        try:
            return date.fromisoformat(value).toordinal() - date(1970, 1, 1).toordinal()
        except ValueError:
            raise Mismatch("expected an ISO-8601 date or days since 1970-01-01") from None
    raise _fail("an ISO-8601 date", value)


def _decimal(scale: int, precision: int | None) -> Convert:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _fail("a decimal (string or number)", value)
        try:
            scaled = Decimal(str(value)).scaleb(scale)
            unscaled = int(scaled)
        except (InvalidOperation, ValueError):
            raise Mismatch("expected a decimal (string or number)") from None
        if scaled != unscaled:
            raise Mismatch(f"expected a decimal with at most {scale} decimal places")
        if precision is not None and len(str(abs(unscaled))) > precision:
            raise Mismatch(f"expected a decimal of at most {precision} digits")
        size = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
        return unscaled.to_bytes(size, "big", signed=True)

    return convert


def _primitive(kind: str) -> Convert:
    if kind == "null":

        def convert(value: Any) -> Any:
            if value is None:
                return None
            raise _fail("null", value)

    elif kind == "boolean":

        def convert(value: Any) -> Any:
            if value is True or value is False:
                return value
            raise _fail("boolean", value)

    elif kind in ("int", "long"):

        def convert(value: Any) -> Any:
            if type(value) is int:
                return value
            if type(value) is float and value.is_integer():
                return int(value)
            raise _fail("integer", value)

    elif kind in ("float", "double"):

        def convert(value: Any) -> Any:
            if type(value) is float or type(value) is int:
                return float(value)
            raise _fail("number", value)

    elif kind == "string":

        def convert(value: Any) -> Any:
            if type(value) is str:
                return value
            raise _fail("string", value)

    else:  # bytes

        def convert(value: Any) -> Any:
            if type(value) is str:
                try:
                    return base64.b64decode(value, validate=True)
                except ValueError:
                    raise Mismatch("expected base64 bytes") from None
            raise _fail("base64 string", value)

    return convert


class _Compiler:
    """Builds converters for the types of one schema; named types are compiled once."""

    def __init__(self) -> None:
        self.named: dict[str, Convert] = {}

    def compile(self, node: Any) -> Convert:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return _primitive(node)
            return lambda value: self.named[node](value)  # a reference to a named type
        if isinstance(node, list):
            return self._union(node)
        kind = node.get("type")
        logical = node.get("logicalType")
        if kind in ("long", "int") and logical in TIME_LOGICAL:
            return _timestamp(1000 if logical.endswith("micros") else 1)
        if kind == "int" and logical == "date":
            return _date
        if kind in ("bytes", "fixed") and logical == "decimal":
            return _decimal(int(node.get("scale", 0)), node.get("precision"))
        if kind in PRIMITIVES:
            return _primitive(kind)
        if kind in ("record", "error"):
            return self._record(node)
        if kind == "enum":
            return self._enum(node)
        if kind == "array":
            return self._array(self.compile(node["items"]))
        if kind == "map":
            return self._map(self.compile(node["values"]))
        if kind == "fixed":
            return self._fixed(node)
        return self.compile(kind)

    def _record(self, node: dict[str, Any]) -> Convert:
        fields: list[tuple[str, Convert, bool, Any]] = []

        def convert_record(value: Any) -> Any:
            if type(value) is not dict:
                raise _fail("object", value)
            out = {}
            for name, convert, has_default, default in fields:
                if name in value:
                    try:
                        out[name] = convert(value[name])
                    except Mismatch as exc:
                        exc.path.append(_field_path(name))
                        raise
                elif has_default:
                    out[name] = default
                else:
                    missing = Mismatch("missing required field")
                    missing.path.append(_field_path(name))
                    raise missing
            return out

        self.named[node["name"]] = convert_record
        for f in node.get("fields", []):
            ftype = f["type"]
            nullable = isinstance(ftype, list) and "null" in ftype
            has_default = "default" in f or nullable
            fields.append((f["name"], self.compile(ftype), has_default, f.get("default")))
        return convert_record

    def _enum(self, node: dict[str, Any]) -> Convert:
        symbols = frozenset(node.get("symbols", []))

        def convert(value: Any) -> Any:
            if type(value) is str and value in symbols:
                return value
            raise Mismatch(f"expected one of {', '.join(node.get('symbols', []))}")

        self.named[node["name"]] = convert
        return convert

    def _fixed(self, node: dict[str, Any]) -> Convert:
        size = node["size"]
        to_bytes = _primitive("bytes")

        def convert(value: Any) -> Any:
            out = to_bytes(value)
            if len(out) != size:
                raise Mismatch(f"expected {size} base64 bytes")
            return out

        self.named[node["name"]] = convert
        return convert

    @staticmethod
    def _array(item: Convert) -> Convert:
        def convert(value: Any) -> Any:
            if type(value) is not list:
                raise _fail("array", value)
            out = []
            for i, element in enumerate(value):
                try:
                    out.append(item(element))
                except Mismatch as exc:
                    exc.path.append(f"[{i}]")
                    raise
            return out

        return convert

    @staticmethod
    def _map(values: Convert) -> Convert:
        def convert(value: Any) -> Any:
            if type(value) is not dict:
                raise _fail("object", value)
            out = {}
            for key, element in value.items():
                try:
                    out[key] = values(element)
                except Mismatch as exc:
                    exc.path.append(f"[{json.dumps(key)}]")
                    raise
            return out

        return convert

    def _union(self, branches: list[Any]) -> Convert:
        nullable = "null" in branches
        others = [self.compile(b) for b in branches if b != "null"]

        def convert(value: Any) -> Any:
            if value is None and nullable:
                return None
            first: Mismatch | None = None
            for branch in others:
                try:
                    return branch(value)
                except Mismatch as exc:
                    first = first or exc
            if first is None:
                raise _fail("null", value)
            if value is None or len(others) > 1:
                raise Mismatch(first.expected)
            raise first

        return convert


class JsonCodec:
    """Reads and writes JSON values of one schema (the same interface as `AvroCodec`)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._convert = _Compiler().compile(schema.definition)
        self._logical = _logical_fields(schema.definition)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise DecodeError("empty value (tombstone)")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not valid JSON: {exc}") from None
        try:
            return self._convert(value)  # type: ignore[no-any-return]
        except Mismatch as exc:
            raise DecodeError(f"{exc.where()}: {exc.expected}") from None

    def encode(self, record: dict[str, Any], *, check: bool = True) -> bytes:
        """Compact JSON of a record; one that does not fit the schema is an EncodeError."""
        try:
            validate(record, self.schema.parsed, raise_errors=True)
        except ValidationError as exc:
            raise EncodeError(describe_validation_error(exc)) from None
        try:
            return json.dumps(
                self._json_value(record), separators=(",", ":"), allow_nan=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"does not fit {self.schema.name} as JSON: {exc}") from None

    def _json_value(self, record: dict[str, Any]) -> Any:
        if not self._logical:
            return _plain(record)
        out = _plain(record)
        for name, scale in self._logical.items():
            raw = record.get(name)
            if isinstance(raw, bytes):
                out[name] = str(Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _logical_fields(definition: dict[str, Any]) -> dict[str, int]:
    """Top-level decimal fields of a record schema: name -> scale."""
    out = {}
    for f in definition.get("fields", []):
        ftype = f["type"]
        branches = ftype if isinstance(ftype, list) else [ftype]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("logicalType") == "decimal":
                out[f["name"]] = int(branch.get("scale", 0))
    return out
