"""`streamline schema infer FILE`: a draft `.avsc` from sample data."""

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


@schema_app.command("infer")
def infer(
    file: Annotated[Path, typer.Argument(help="JSON lines (.jsonl, .json) or CSV (.csv).")],
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
    if suffix == ".parquet":
        raise UsageError(
            f"{file}: Parquet is not supported by schema infer yet; give JSON lines or CSV"
        )
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv"):
        raise UsageError(f"{file}: expected .jsonl, .json, .ndjson or .csv")
    text = suffix == ".csv"
    records = _csv_records(file) if text else _json_records(file)
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
