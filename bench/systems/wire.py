"""Single-object Avro for the peers: the same bytes streamline reads, decoded with fastavro.

The header is `C3 01` and the writer schema's 8-byte fingerprint; every input
record of a run is written with one schema (com.example.Order), so the peers
skip the header and read the body with that schema.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro

HEADER_SIZE = 10
MAGIC = b"\xc3\x01"


class SingleObjectReader:
    """Decodes the single-object encoded records of one schema."""

    def __init__(self, schema_path: Path) -> None:
        definition = json.loads(Path(schema_path).read_text())
        # timestamps stay epoch-millisecond ints, as streamline reads them
        self.schema = fastavro.parse_schema(_without_logical_types(definition))

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:2] != MAGIC:
            raise ValueError("not single-object encoded")
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        record: dict[str, Any] = fastavro.schemaless_reader(body, self.schema, None)  # type: ignore[assignment]
        return record


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_logical_types(n) for n in node]
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node
