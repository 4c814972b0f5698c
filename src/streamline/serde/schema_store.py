"""The schema store: every `.avsc` file of a folder, looked up by full name or fingerprint."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form

from streamline.errors import UsageError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "enum", "fixed", "error"})
PREVIOUS_DIR = "previous"


class SchemaError(UsageError):
    """A schema is missing, malformed or refers to a type nobody defines."""


def crc64_avro_fingerprint(canonical_form: str) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of a parsing canonical form, little-endian as on the wire."""
    return bytes.fromhex(fastavro.schema.fingerprint(canonical_form, "CRC-64-AVRO"))


@dataclass(frozen=True)
class Schema:
    """One named schema: its definition with referenced types inlined, and how to read it.

    `parsed` is the fastavro schema used to read and write records. Logical types are
    kept out of it so timestamps travel as plain epoch-millisecond ints through the
    pipeline; `logical_types` still says which field had which logical type.
    """

    name: str
    definition: dict[str, Any]
    canonical_form: str
    fingerprint: bytes
    parsed: Any = field(repr=False, compare=False)
    path: Path | None = None

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def fields(self) -> dict[str, Any]:
        """Field name -> field type (as in the definition) for a record schema, else empty."""
        if self.definition.get("type") not in ("record", "error"):
            return {}
        return {f["name"]: f["type"] for f in self.definition.get("fields", [])}


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _collect_names(node: Any, namespace: str | None, out: dict[str, Any]) -> None:
    """Every named type defined inside `node`, by full name."""
    if isinstance(node, list):
        for branch in node:
            _collect_names(branch, namespace, out)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in NAMED_KINDS and "name" in node:
            full = _full_name(node["name"], node.get("namespace", namespace))
            out[full] = node
            namespace = full.rsplit(".", 1)[0] if "." in full else None
        if kind in ("record", "error"):
            for f in node.get("fields", []):
                _collect_names(f.get("type"), namespace, out)
        elif kind == "array":
            _collect_names(node.get("items"), namespace, out)
        elif kind == "map":
            _collect_names(node.get("values"), namespace, out)
        elif isinstance(kind, (dict, list)):
            _collect_names(kind, namespace, out)


def _inline(node: Any, namespace: str | None, known: dict[str, Any], seen: set[str]) -> Any:
    """Copy of `node` with names fully qualified and each referenced type defined once, at first use."""
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        full = _full_name(node, namespace)
        if full not in known:
            full = node if node in known else full
        if full in seen:
            return full
        if full not in known:
            raise SchemaError(f"unknown type {full}")
        return _inline(known[full], namespace, known, seen)
    if isinstance(node, list):
        return [_inline(b, namespace, known, seen) for b in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    kind = node.get("type")
    if kind in NAMED_KINDS and "name" in node:
        full = _full_name(node["name"], node.get("namespace", namespace))
        seen.add(full)
        out["name"] = full
        out.pop("namespace", None)
        namespace = full.rsplit(".", 1)[0] if "." in full else None
    if kind in ("record", "error"):
        out["fields"] = [
            {**f, "type": _inline(f["type"], namespace, known, seen)}
            for f in node.get("fields", [])
        ]
    elif kind == "array":
        out["items"] = _inline(node["items"], namespace, known, seen)
    elif kind == "map":
        out["values"] = _inline(node["values"], namespace, known, seen)
    elif (
        isinstance(kind, (dict, list, str))
        and kind not in PRIMITIVES
        and kind not in (NAMED_KINDS | {"array", "map"})
    ):
        return _inline(kind, namespace, known, seen)
    return out


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_logical_types(n) for n in node]
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node


def logical_type_of(field_type: Any) -> tuple[str, str | None]:
    """(avro type, logical type) of a field type, looking through a nullable union."""
    if isinstance(field_type, list):
        branches = [b for b in field_type if b != "null"]
        if len(branches) == 1:
            return logical_type_of(branches[0])
        return ("union", None)
    if isinstance(field_type, dict):
        kind = field_type.get("type")
        if isinstance(kind, str):
            return (kind, field_type.get("logicalType"))
        return logical_type_of(kind)
    return (str(field_type), None)


class SchemaStore:
    """All schemas of a `schemas/` folder: `.avsc` files whose types may refer to each other.

    Files under `schemas/previous/` are older versions of current schemas: they are known
    by fingerprint only, so records written with them still decode (read as the current
    version), while a name always means the current version.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SchemaError(
                f"schema folder {self.directory} does not exist "
                "(give one with --schemas DIR or STREAMLINE_SCHEMAS)"
            )
        self._by_name: dict[str, Schema] = {}
        self._by_fingerprint: dict[bytes, Schema] = {}
        self._load()

    def _load(self) -> None:
        known: dict[str, Any] = {}
        tops: list[tuple[str, Path]] = []
        previous = self.directory / PREVIOUS_DIR
        current = [p for p in sorted(self.directory.rglob("*.avsc")) if previous not in p.parents]
        for path in current:
            for full, names in self._read(path):
                for name in names:
                    if name in known:
                        raise SchemaError(f"{path}: type {name} is defined twice")
                known.update(names)
                tops.append((full, path))
        for full, path in tops:
            self._add(full, path, known, by_name=True)
        for path in sorted(previous.rglob("*.avsc")):
            for full, names in self._read(path):
                self._add(full, path, {**known, **names}, by_name=False)

    @staticmethod
    def _read(path: Path) -> list[tuple[str, dict[str, Any]]]:
        """(full name, named types it defines) of each top-level schema in a file."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{path}: not a JSON Avro schema: {exc}") from exc
        out = []
        for top in raw if isinstance(raw, list) else [raw]:
            if not isinstance(top, dict) or "name" not in top:
                raise SchemaError(f"{path}: a schema file must define named types")
            names: dict[str, Any] = {}
            _collect_names(top, None, names)
            out.append((_full_name(top["name"], top.get("namespace")), names))
        return out

    def _add(self, full: str, path: Path, known: dict[str, Any], by_name: bool) -> None:
        try:
            definition = _inline(full, None, known, set())
            canonical = to_parsing_canonical_form(copy.deepcopy(definition))
            parsed = fastavro.parse_schema(_without_logical_types(definition))
        except SchemaError as exc:
            raise SchemaError(f"{path}: {full}: {exc}") from exc
        except (SchemaParseException, UnknownType, ValueError, KeyError, TypeError) as exc:
            raise SchemaError(f"{path}: {full} is not a valid Avro schema: {exc}") from exc
        schema = Schema(
            name=full,
            definition=definition,
            canonical_form=canonical,
            fingerprint=crc64_avro_fingerprint(canonical),
            parsed=parsed,
            path=path,
        )
        if by_name:
            self._by_name[full] = schema
        self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Schema:
        """The schema with this full name; a clear error naming the known ones otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise SchemaError(
                f"unknown schema {name}; known: {known} (in {self.directory})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def by_fingerprint(self, fingerprint: bytes) -> Schema | None:
        return self._by_fingerprint.get(fingerprint)
