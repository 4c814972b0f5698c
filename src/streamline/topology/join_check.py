"""Type checking tables and join stages (called by `typecheck.py`).

A table's schema must hold its key field (a key type) and its `valid_from` field (a
timestamp); a join's `on` field must exist in the records reaching it and have the
table key's type, each table field it adds must exist, and no new field may clash with
one the records already have. The records after a join carry the new fields: the
stages after it and the sink are checked against the joined schema this returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from streamline.serde.schema_store import Schema
from streamline.topology import avro_types
from streamline.topology.model import JoinSpec, Table, Topology, source_named, table_named


class Checker(Protocol):
    topology: Topology

    def problem(self, path: str, message: str) -> None: ...
    def schema(self, path: str, name: str) -> Schema | None: ...


def check_tables(checker: Checker) -> dict[str, Schema]:
    """The schema of each table whose definition checks out, by table name."""
    schemas: dict[str, Schema] = {}
    for i, table in enumerate(checker.topology.tables):
        schema = checker.schema(f"tables[{i}].schema", table.schema_name)
        if schema is None:
            continue
        named = avro_types.named_types(schema)
        ok = True
        if table.key is not None:
            key_type = schema.fields.get(table.key)
            if key_type is None:
                checker.problem(
                    f"tables[{i}].key",
                    f"unknown field {table.key!r}; fields of {schema.name}: "
                    f"{', '.join(schema.fields)}",
                )
                ok = False
            elif not avro_types.can_be_key(key_type, named):
                checker.problem(
                    f"tables[{i}].key",
                    f"field {table.key!r} is {avro_types.describe(key_type, named)}; a key must "
                    "be a string, number, boolean or enum",
                )
                ok = False
        if table.valid_from is not None:
            valid_type = schema.fields.get(table.valid_from)
            if valid_type is None or not (
                avro_types.is_millis_long(valid_type, named)
                or avro_types.is_string(valid_type, named)
            ):
                got = "missing" if valid_type is None else avro_types.describe(valid_type, named)
                checker.problem(
                    f"tables[{i}].valid_from",
                    f"field {table.valid_from!r} of {schema.name} is {got}; expected long "
                    "timestamp-millis (or epoch milliseconds) or an ISO-8601 string",
                )
                ok = False
        if ok:
            schemas[table.name] = schema
    return schemas


def table_key_type(table: Table, schema: Schema) -> Any:
    """The Avro type of a table's key: its key field's, or string (the record key)."""
    return schema.fields[table.key] if table.key is not None else "string"


def check_join(
    checker: Checker,
    path: str,
    spec: JoinSpec,
    records: Schema | None,
    tables: dict[str, Schema],
) -> Schema | None:
    """Checks one join stage against the records reaching it; returns the joined schema."""
    topology = checker.topology
    if spec.table is None or spec.table not in tables or records is None:
        return records
    table = table_named(topology, spec.table)
    schema = tables[spec.table]
    named = {**avro_types.named_types(records), **avro_types.named_types(schema)}
    on_type = records.fields.get(spec.left_on)
    if on_type is None:
        checker.problem(
            f"{path}.on",
            f"unknown field {spec.on!r} (join key); fields of the records here: "
            f"{', '.join(records.fields)}",
        )
    else:
        key_type = table_key_type(table, schema)
        if _base(on_type, named) != _base(key_type, named):
            key_name = f"field {table.key!r}" if table.key else "the record key"
            checker.problem(
                f"{path}.on",
                f"field {spec.on!r} is {avro_types.describe(on_type, named)}, but the key of "
                f"table {table.name!r} ({key_name}) is {avro_types.describe(key_type, named)}",
            )
    partitioned_by = topology.source.partitioned_by
    if partitioned_by != spec.on and not table.global_:
        checker.problem(
            f"{path}.on",
            f"the stream must be partitioned by the join key {spec.on!r} (sources[0]."
            f"partitioned_by is {partitioned_by!r}): set partitioned_by: {spec.on} and key the "
            "source records by it, with the same partitioner as the table's topic; "
            "repartitioning before a join is not supported yet (a global table needs neither)",
        )
    added = _added_fields(
        checker, path, spec, records, schema, f"table {table.name!r}", spec.missing == "null"
    )
    definition = dict(records.definition)
    definition["fields"] = [
        *records.definition.get("fields", []),
        *({"name": name, "type": t} for name, t in added.items()),
    ]
    return dataclasses.replace(records, name=f"{records.name}+{table.name}", definition=definition)


def check_stream_join(
    checker: Checker, path: str, spec: JoinSpec, records: Schema | None
) -> Schema | None:
    """Checks a stream-stream join against the records reaching it and the joined stream's
    schema; returns the joined schema (the new fields nullable for `left` and `outer`, the
    records' fields but the key nullable for `outer`)."""
    topology = checker.topology
    if spec.stream is None or records is None:
        return records
    index = next((i for i, s in enumerate(topology.sources) if s.name == spec.stream), None)
    if index is None:
        return records
    source = source_named(topology, spec.stream)
    right = checker.schema(f"sources[{index}].schema", source.schema_name)
    if right is None:
        return records
    named = {**avro_types.named_types(records), **avro_types.named_types(right)}
    left_path = f"{path}.on" if isinstance(spec.on, str) else f"{path}.on.left"
    right_path = f"{path}.on" if isinstance(spec.on, str) else f"{path}.on.right"
    left_type = records.fields.get(spec.left_on)
    right_type = right.fields.get(spec.right_on)
    if left_type is None:
        checker.problem(
            left_path,
            f"unknown field {spec.left_on!r} (join key); fields of the records here: "
            f"{', '.join(records.fields)}",
        )
    if right_type is None:
        checker.problem(
            right_path,
            f"stream {spec.stream!r} has no field {spec.right_on!r} (join key); fields of "
            f"{right.name}: {', '.join(right.fields)}",
        )
    if left_type is not None and right_type is not None:
        if _base(left_type, named) != _base(right_type, named):
            checker.problem(
                f"{path}.on",
                f"the join key is {avro_types.describe(left_type, named)} in the records "
                f"({spec.left_on!r}) but {avro_types.describe(right_type, named)} in stream "
                f"{spec.stream!r} ({spec.right_on!r}): both sides need the same type",
            )
        elif not avro_types.can_be_key(left_type, named):
            checker.problem(
                f"{path}.on",
                f"the join key is {avro_types.describe(left_type, named)}; a key must be a "
                "string, number, boolean or enum",
            )
    for i, left in enumerate(topology.sources):
        on = spec.right_on if left.name == spec.stream else spec.left_on
        if left.partitioned_by != on:
            checker.problem(
                f"sources[{i}].partitioned_by",
                f"a stream join needs both sides partitioned by the join key: set "
                f"partitioned_by: {on} and key the records of {left.topic} by it (with the "
                f"other side's partitioner); repartitioning before a stream join is not "
                f"supported yet",
            )
    added = _added_fields(
        checker, path, spec, records, right, f"stream {spec.stream!r}", spec.type != "inner"
    )
    fields = []
    for f in records.definition.get("fields", []):
        if (
            spec.type == "outer"
            and f["name"] != spec.left_on
            and not avro_types.is_nullable(f["type"])
        ):
            f = {**f, "type": ["null", f["type"]]}
            f.pop("default", None)
        fields.append(f)
    definition = dict(records.definition)
    definition["fields"] = [*fields, *({"name": n, "type": t} for n, t in added.items())]
    return dataclasses.replace(records, name=f"{records.name}+{spec.stream}", definition=definition)


def _added_fields(
    checker: Checker,
    path: str,
    spec: JoinSpec,
    records: Schema,
    other: Schema,
    other_label: str,
    nullable: bool,
) -> dict[str, Any]:
    """The fields a join adds (new name -> type, made nullable when a match may be
    missing); a field `other` lacks, or a name the records already have, is a problem."""
    added: dict[str, Any] = {}
    for new, other_field in spec.fields.items():
        field_type = other.fields.get(other_field)
        if field_type is None:
            checker.problem(
                f"{path}.fields.{new}",
                f"{other_label} has no field {other_field!r}; fields of "
                f"{other.name}: {', '.join(other.fields)}",
            )
            continue
        if new in records.fields:
            checker.problem(
                f"{path}.fields.{new}",
                f"the records already have a field {new!r}; pick another name",
            )
            continue
        if nullable and not avro_types.is_nullable(field_type):
            field_type = ["null", field_type]
        added[new] = field_type
    return added


def _base(field_type: Any, named: Any) -> Any:
    """A type's kind without null, for comparing the join key's type to the table key's."""
    resolved = avro_types.resolve_branches(field_type, named)
    if isinstance(resolved, list):
        branches = [b for b in resolved if b != "null"]
        resolved = branches[0] if len(branches) == 1 else "union"
    if isinstance(resolved, dict):
        kind = resolved.get("type")
        return (kind, resolved.get("name")) if kind == "enum" else kind
    return resolved
