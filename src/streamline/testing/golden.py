"""Golden-file tests: input files piped through the driver, the output compared with a file.

A golden file holds one sink record per line as compact JSON, its fields in the sink
schema's order (so sorted lines group by key and window, and a changed record shows as
two adjacent diff lines); the lines are sorted: Kafka orders records only within a
partition, and records of different keys have no order a topology defines, so the
comparison ignores order.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamline.errors import UsageError
from streamline.serde import SchemaStore
from streamline.serde.convert import convert_json_record, to_json_value
from streamline.testing.driver import TopologyDriver
from streamline.topology import CheckedTopology


def read_jsonl(path: Path, checked: CheckedTopology) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (timestamps may be ISO-8601 strings)."""
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{number}: not a JSON object")
        try:
            records.append(convert_json_record(value, checked.source_schema))
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
    return records


def output_lines(
    checked: CheckedTopology,
    store: SchemaStore,
    inputs: Mapping[str, Path],
    partitions: int = 1,
) -> list[str]:
    """The topology's sink records for the inputs (source -> JSON-lines file), as golden lines.

    Every input is piped, then `flush()` closes every window that can close. A source
    with `partitioned_by` is keyed by that field.
    """
    with TopologyDriver(checked, store, partitions=partitions) as driver:
        for source, path in inputs.items():
            records = read_jsonl(path, checked)
            spec = next((s for s in checked.topology.sources if source in (s.name, s.topic)), None)
            if spec is None:
                names = ", ".join(s.name for s in checked.topology.sources)
                raise UsageError(f"--input {source}: not a source of the topology ({names})")
            field = spec.partitioned_by
            if field is None:
                driver.pipe(source, records)
            else:
                driver.pipe(source, [(_key(r, field), r) for r in records])
        driver.flush()
        return sorted(canonical(r.value) for r in driver.output())


def _key(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    return None if value is None else str(value)


def canonical(value: Any) -> str:
    """One golden line: compact JSON, the fields in the sink schema's order."""
    return json.dumps(to_json_value(value), separators=(",", ":"))


def read_golden(path: Path) -> list[str]:
    """The golden file's lines, sorted (blank lines ignored)."""
    return sorted(line for line in path.read_text().splitlines() if line.strip())


def write_golden(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def diff(expected: list[str], actual: list[str], name: str) -> list[str]:
    """A unified diff of the sorted golden lines and the actual ones (empty when they match)."""
    return list(
        difflib.unified_diff(expected, actual, f"{name} (expected)", "actual output", lineterm="")
    )
