"""One table written batch by batch to a Parquet, CSV or JSON-lines file, with fixed columns."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

BATCH_ROWS = 5000
"""Rows held in memory at a time (one Parquet row group)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: Literal["string", "int64"]


class TableWriter(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class _ParquetWriter:
    def __init__(self, path: Path, columns: list[Column]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema(
            [pa.field(c.name, pa.string() if c.type == "string" else pa.int64()) for c in columns]
        )
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_table(self.pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


class _CsvWriter:
    def __init__(self, path: Path, columns: list[Column]) -> None:
        self.file = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, [c.name for c in columns])
        self.writer.writeheader()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.writerows(rows)

    def close(self) -> None:
        self.file.close()


class _JsonLinesWriter:
    def __init__(self, path: Path, columns: list[Column]) -> None:
        self.file = path.open("w", encoding="utf-8")
        self.names = [c.name for c in columns]

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.file.write(json.dumps({n: row.get(n) for n in self.names}) + "\n")

    def close(self) -> None:
        self.file.close()


@contextmanager
def open_table(path: Path, fmt: str, columns: list[Column]) -> Iterator[TableWriter]:
    """A writer of `columns` to `path`; the file is complete (footer written) on exit."""
    writer: TableWriter
    if fmt == "parquet":
        writer = _ParquetWriter(path, columns)
    elif fmt == "csv":
        writer = _CsvWriter(path, columns)
    else:
        writer = _JsonLinesWriter(path, columns)
    try:
        yield writer
    finally:
        writer.close()
