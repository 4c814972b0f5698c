"""`streamline schema infer FILE`: a draft `.avsc` from sample data (JSON lines, CSV, Parquet)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer

from streamline.errors import UsageError

schema_app = typer.Typer(help="Avro schemas: draft one from sample data.")


def _json_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object per line")
            yield record


def _csv_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="") as stream:
        yield from csv.DictReader(stream)


def _parquet_records(path: Path, limit: int) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path}: not a readable Parquet file: {exc}") from None
    seen = 0
    for batch in parquet.iter_batches(batch_size=min(limit, 10_000)):
        for row in batch.to_pylist():
            yield row
            seen += 1
            if seen >= limit:
                return


@schema_app.command("infer")
def infer(
    file: Annotated[
        Path, typer.Argument(help="JSON lines (.jsonl, .json), CSV (.csv) or Parquet (.parquet).")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Record name (default: from the file name).")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Namespace, e.g. com.example.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Read at most N records.")] = 100_000,
) -> None:
    """Print a draft Avro schema (.avsc) for the records in FILE: field types, nullability,
    timestamps; edit it, then put it under schemas/."""
    from streamline.serde.infer import infer_schema

    if not file.is_file():
        raise UsageError(f"cannot read {file}: no such file")
    suffix = file.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".parquet"):
        raise UsageError(f"{file}: expected .jsonl, .json, .ndjson, .csv or .parquet")
    text = suffix == ".csv"
    records = (
        _parquet_records(file, limit)
        if suffix == ".parquet"
        else _csv_records(file)
        if text
        else _json_records(file)
    )
    record_name = name or "".join(
        part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", file.stem) if part
    )
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", record_name):
        raise UsageError(f"--name {record_name!r} is not an Avro name")
    try:
        schema = infer_schema(islice(records, limit), record_name, namespace, text=text)
    except ValueError as exc:
        raise UsageError(f"{file}: {exc}") from None
    print(json.dumps(schema, indent=2))
